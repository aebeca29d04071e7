// Where scheduler modules come from: MOUNT/.kdfs/modules/NAME.js in the file
// system (one copy serves every node; only root may write there), else the
// built-in ones shipped in src/scheduler/modules/.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { MODULE_NAME } from './config.js';

/** From dist/src/scheduler (built) to the sources of the built-in modules. */
const BUILTIN_DIR = path.join(__dirname, '..', '..', '..', 'src', 'scheduler', 'modules');
/** A module larger than this is refused. */
export const MODULE_SOURCE_MAX_BYTES = 1024 * 1024;
export const CONTROL_DIR = '.kdfs';
export const MODULES_DIR = 'modules';
export const SCHEDULER_DIR = 'scheduler';

export function builtinModuleSource(name: string): string | null {
  if (!MODULE_NAME.test(name)) return null;
  try {
    return readFileSync(path.join(BUILTIN_DIR, `${name}.js`), 'utf8');
  } catch {
    return null;
  }
}
