// One process of the metadata workload, in the manner of mdtest: one phase over
// its own directory of small files. Run as: node mdWorker.js DIR FILES PHASE;
// prints the seconds the phase took. 'create-empty' is mdtest's own create
// (its default writes no bytes: open O_CREAT|O_WRONLY, close).
import fs from 'node:fs';
import path from 'node:path';

const [dir, filesText, phase] = process.argv.slice(2);
const files = Number(filesText);
const content = Buffer.alloc(100, 'k');
const started = process.hrtime.bigint();
for (let i = 0; i < files; i++) {
  const file = path.join(dir, `f${i}`);
  switch (phase) {
    case 'create':
      fs.writeFileSync(file, content);
      break;
    case 'create-empty':
      fs.closeSync(fs.openSync(file, fs.constants.O_CREAT | fs.constants.O_WRONLY, 0o644));
      break;
    case 'stat':
      fs.statSync(file);
      break;
    case 'read':
      fs.readFileSync(file);
      break;
    case 'remove':
      fs.unlinkSync(file);
      break;
    default:
      throw new Error(`unknown phase ${phase}`);
  }
}
process.stdout.write(String(Number(process.hrtime.bigint() - started) / 1e9));
