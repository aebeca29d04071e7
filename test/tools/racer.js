// One side of the create race of test/cluster/delegation.test.ts, run on one
// node's mount: node DIR TAG ROUNDS LOGDIR. Each round it creates its own file
// (written, closed), creates another that it keeps open, unwritten (and says so
// in LOGDIR/TAG.log, on the local disk), tries to take a shared name with
// O_EXCL (writing its tag into it if it won), lists the directory, reads a file
// the other side made and stats those the other side said it holds open, and
// removes every third of its own files. Prints, as JSON, what it made and won.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const [dir, tag, roundsText, logDir] = process.argv.slice(2);
const rounds = Number(roundsText);
const other = tag === 'a' ? 'b' : 'a';
const made = [];
const removed = [];
const won = [];
const errors = [];
const held = [];
const log = path.join(logDir, `${tag}.log`);
const otherLog = path.join(logDir, `${other}.log`);
let checked = 0;

for (let i = 0; i < rounds; i++) {
  const own = path.join(dir, `${tag}${i}`);
  fs.writeFileSync(own, `${tag} ${i}`);
  made.push(`${tag}${i}`);
  held.push(fs.openSync(path.join(dir, `h${tag}${i}`), 'w'));
  made.push(`h${tag}${i}`);
  fs.appendFileSync(log, `h${tag}${i}\n`);
  // what the other side holds open exists for this node too, at once
  const others = fs.existsSync(otherLog) ? fs.readFileSync(otherLog, 'utf8').split('\n').filter(Boolean) : [];
  for (; checked < others.length; checked++) {
    try {
      fs.statSync(path.join(dir, others[checked]));
    } catch (err) {
      errors.push(`${others[checked]}, open on the other node: ${err.code}`);
    }
  }
  try {
    const fd = fs.openSync(path.join(dir, `s${i}`), 'wx');
    fs.writeSync(fd, tag);
    fs.closeSync(fd);
    won.push(`s${i}`);
  } catch (err) {
    if (err.code !== 'EEXIST') errors.push(`s${i}: ${err.code}`);
  }
  const names = fs.readdirSync(dir);
  if (!names.includes(`${tag}${i}`)) errors.push(`listing lacks ${tag}${i}`);
  try {
    const content = fs.readFileSync(path.join(dir, `${other}${i - 1}`), 'utf8');
    // empty while its maker has created it and not yet written it
    if (content !== `${other} ${i - 1}` && content !== '') errors.push(`${other}${i - 1} reads ${JSON.stringify(content)}`);
  } catch (err) {
    // not made yet, or removed by its maker
    if (err.code !== 'ENOENT') errors.push(`${other}${i - 1}: ${err.code}`);
  }
  if (i % 3 === 2) {
    fs.unlinkSync(path.join(dir, `${tag}${i - 1}`));
    removed.push(`${tag}${i - 1}`);
  }
}
for (const fd of held) fs.closeSync(fd);
process.stdout.write(JSON.stringify({ made, removed, won, errors }));
