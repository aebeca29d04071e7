// A metadata-heavy workload for the failover tests: node churn.js DIR TAG ROUNDS LOG.
// Each round creates TAG-i (written, closed), renames every fourth to TAG-i.r,
// and removes the file of two rounds before every third round. After each
// step that returned, it appends what it did to LOG (on the local disk):
// "created NAME", "renamed NAME NEW", "removed NAME". Any error ends it with
// status 1 and the error on stderr.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const [dir, tag, roundsText, log] = process.argv.slice(2);
const rounds = Number(roundsText);
const names = [];
const note = (line) => fs.appendFileSync(log, line + '\n');

try {
  for (let i = 0; i < rounds; i++) {
    let name = `${tag}-${i}`;
    const fd = fs.openSync(path.join(dir, name), 'w');
    fs.writeSync(fd, `${name}\n`);
    fs.closeSync(fd);
    note(`created ${name}`);
    if (i % 4 === 1) {
      fs.renameSync(path.join(dir, name), path.join(dir, `${name}.r`));
      note(`renamed ${name} ${name}.r`);
      name = `${name}.r`;
    }
    names.push(name);
    if (i % 3 === 2) {
      const victim = names[i - 2];
      fs.unlinkSync(path.join(dir, victim));
      note(`removed ${victim}`);
    }
  }
} catch (err) {
  process.stderr.write(`churn ${tag}: ${err.code ?? ''} ${err.message}\n`);
  process.exit(1);
}
