'use strict';
// Starts one of kDFS's commands from the build (dist/), which `npm run setup` makes.
const path = require('node:path');

module.exports = function launch(prog, moduleName, entry = 'run') {
  const file = path.join(__dirname, '..', 'dist', 'src', 'cli', moduleName + '.js');
  let command;
  try {
    command = require(file);
  } catch (err) {
    if (err && err.code === 'MODULE_NOT_FOUND' && String(err.message).includes(file)) {
      process.stderr.write(`${prog}: kDFS is not built: run "npm run setup" in ${path.dirname(__dirname)}\n`);
      process.exit(1);
    }
    throw err;
  }
  command[entry]();
};
