import path from 'node:path';
import winston from 'winston';
import DailyRotateFile from 'winston-daily-rotate-file';
import { LOG_LEVELS, type Config, type LogLevel } from '../config';

export type Logger = winston.Logger;

export interface Logging {
  logger: Logger;
  consoleLevel(): LogLevel;
  /** Changes the console level; returns the previous one. The file keeps logFileLevel. */
  setConsoleLevel(level: LogLevel): LogLevel;
  /** Flushes and closes the file. */
  close(): Promise<void>;
}

const finer = (a: LogLevel, b: LogLevel): LogLevel => (LOG_LEVELS.indexOf(a) > LOG_LEVELS.indexOf(b) ? a : b);

/** `/tmp/jsongle-server.log` rotates as `/tmp/jsongle-server-2026-11-29.log`, and so on. */
export function rotatedFileName(logPath: string): { dirname: string; filename: string } {
  const ext = path.extname(logPath) || '.log';
  return { dirname: path.dirname(logPath), filename: `${path.basename(logPath, ext)}-%DATE%${ext}` };
}

const consoleLine = winston.format.printf((info) => {
  const { timestamp, level, message, module, ...fields } = info;
  const rest = Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
  return `${String(timestamp)} ${level} [${typeof module === 'string' ? module : 'server'}] ${String(message)}${rest}`;
});

export function createLogging(
  config: Pick<Config, 'logDefaultLevel' | 'logFileLevel' | 'logPath' | 'logFilesNumber' | 'logFilePeriod'>,
): Logging {
  const daily = config.logFilePeriod === '1d';
  const file = new DailyRotateFile({
    ...rotatedFileName(config.logPath),
    level: config.logFileLevel,
    datePattern: daily ? 'YYYY-MM-DD' : 'YYYY-MM-DD-HH-mm',
    frequency: daily ? undefined : config.logFilePeriod,
    maxFiles: config.logFilesNumber,
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
  });
  const console = new winston.transports.Console({
    level: config.logDefaultLevel,
    format: winston.format.combine(winston.format.timestamp(), consoleLine),
  });
  // The logger's own level is the finer of its transports', so that level checks
  // (`logger.isDebugEnabled()`) skip work only when no transport would write the line.
  const logger = winston.createLogger({
    level: finer(config.logDefaultLevel, config.logFileLevel),
    levels: winston.config.npm.levels,
    transports: [console, file],
  });
  file.on('error', (error: Error) => logger.error('log file error', { module: 'logger', error: error.message }));

  let closed: Promise<void> | undefined;
  return {
    logger,
    consoleLevel: () => console.level as LogLevel,
    setConsoleLevel(level) {
      const was = console.level as LogLevel;
      console.level = level;
      logger.level = finer(level, config.logFileLevel);
      return was;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        // winston's own 'finish' comes before the rotating file's stream has written its last
        // lines: wait for that stream (bounded, should it never say so).
        const stream = (file as unknown as { logStream?: NodeJS.EventEmitter }).logStream;
        const timer = setTimeout(resolve, 2000);
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        if (stream) stream.once('finish', done);
        else logger.once('finish', done);
        logger.end();
      });
      return closed;
    },
  };
}
