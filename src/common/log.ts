// Line-oriented logging: to stderr in the foreground, to DIR/kdfs.log when daemonized.
import { appendFileSync } from 'node:fs';

type Level = 'debug' | 'info' | 'warn' | 'error';
const rank: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

let sinkPath: string | null = null;
let threshold: number = rank[(process.env.KDFS_LOG_LEVEL as Level) ?? 'info'] ?? rank.info;
let prefix = 'kdfs';

export function configureLog(options: { file?: string | null; prefix?: string; level?: Level }): void {
  if (options.file !== undefined) sinkPath = options.file;
  if (options.prefix) prefix = options.prefix;
  if (options.level) threshold = rank[options.level];
}

/** Lines the log file could not take (its disk is full): told once it takes them again. */
let dropped = 0;
// a stderr that cannot be written (a full disk under it, a closed pipe) must not end the process
process.stderr.on('error', () => {});

function write(level: Level, message: string): void {
  if (rank[level] < threshold) return;
  const line = `${new Date().toISOString()} ${prefix} ${level}: ${message}\n`;
  if (sinkPath) {
    try {
      if (dropped > 0) appendFileSync(sinkPath, `${new Date().toISOString()} ${prefix} warn: ${dropped} lines of log were lost (the log file could not be written)\n`);
      dropped = 0;
      appendFileSync(sinkPath, line);
    } catch {
      // the log file is unwritable (a full disk): stderr is the same file in a daemon
      dropped++;
    }
    return;
  }
  try {
    process.stderr.write(line);
  } catch {
    dropped++;
  }
}

export const log = {
  debug: (m: string) => write('debug', m),
  info: (m: string) => write('info', m),
  warn: (m: string) => write('warn', m),
  error: (m: string) => write('error', m),
  enabled: (level: Level) => rank[level] >= threshold,
};
