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

function write(level: Level, message: string): void {
  if (rank[level] < threshold) return;
  const line = `${new Date().toISOString()} ${prefix} ${level}: ${message}\n`;
  if (sinkPath) {
    try {
      appendFileSync(sinkPath, line);
      return;
    } catch {
      // The log file is unwritable (full disk?): fall back to stderr.
    }
  }
  process.stderr.write(line);
}

export const log = {
  debug: (m: string) => write('debug', m),
  info: (m: string) => write('info', m),
  warn: (m: string) => write('warn', m),
  error: (m: string) => write('error', m),
  enabled: (level: Level) => rank[level] >= threshold,
};
