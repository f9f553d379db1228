// Lifecycle. Every long-lived component starts and stops through Startable; the daemon starts them
// in order and stops them in reverse. close() must be idempotent.

export interface Startable {
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Start components in order; if one fails, close the ones already started (in reverse) and rethrow. */
export async function startAll(components: readonly Startable[]): Promise<void> {
  const started: Startable[] = [];
  try {
    for (const c of components) {
      await c.start();
      started.push(c);
    }
  } catch (err) {
    await closeAll(started);
    throw err;
  }
}

/** Close components in reverse order; errors are collected, never stop the rest from closing. */
export async function closeAll(components: readonly Startable[]): Promise<unknown[]> {
  const errors: unknown[] = [];
  for (const c of [...components].reverse()) {
    try {
      await c.close();
    } catch (err) {
      errors.push(err);
    }
  }
  return errors;
}
