import { ConfigError, loadConfig } from './config';
import { createServer } from './server';

const SHUTDOWN_TIMEOUT_MS = 10_000;

/** Production entry point: `node dist/index.js`. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`jsongle-server: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  const server = await createServer(config);
  const { logger } = server.logging;
  process.on('unhandledRejection', (reason) => logger.error('unhandled promise rejection', { module: 'process', reason: String(reason) }));
  process.on('uncaughtException', (error) => logger.error('uncaught exception', { module: 'process', error: error.stack }));

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.warn(`${signal} received: shutting down`, { module: 'process' });
    // Bounded: a shutdown that hangs (a registry that never answers) must still end.
    setTimeout(() => {
      console.error(`jsongle-server: shutdown took over ${SHUTDOWN_TIMEOUT_MS} ms, exiting anyway`);
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS).unref();
    void (async () => {
      let code = 0;
      try {
        await server.close();
      } catch (error) {
        logger.error('shutdown failed', { module: 'process', error: String(error) });
        code = 1;
      }
      // The log is flushed either way, so that the line above is in it.
      await server.logging.close().catch(() => undefined);
      process.exit(code);
    })();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  await server.listen();
}

main().catch((error: unknown) => {
  console.error('jsongle-server failed to start:', error instanceof Error ? error.message : error);
  process.exit(1);
});
