// CSR signing limits: a token bucket (per second) and a concurrency cap. A refusal is a
// MESH_ERR_CA_RATE_LIMITED MeshError (HTTP 429) with details.retryAfterMs so clients back off.

import { MeshError, type Clock } from '@meshfed/core';

export interface SigningLimiterOptions {
  /** Sustained signings per second; 0 disables the rate limit. Default 1000. */
  maxPerSecond: number;
  /** Signings in flight at once; 0 disables the cap. Default 0. */
  maxConcurrent: number;
}

export class SigningLimiter {
  private tokens: number;
  private last: number;
  private inFlight = 0;

  constructor(
    private options: SigningLimiterOptions,
    private readonly clock: Clock,
  ) {
    this.tokens = Math.max(1, options.maxPerSecond);
    this.last = clock.monotonic();
  }

  reconfigure(options: SigningLimiterOptions): void {
    this.options = options;
    this.tokens = Math.min(this.tokens, Math.max(1, options.maxPerSecond));
  }

  /** Run `fn` if allowed now, else throw MESH_ERR_CA_RATE_LIMITED. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const { maxPerSecond, maxConcurrent } = this.options;
    if (maxConcurrent > 0 && this.inFlight >= maxConcurrent)
      throw new MeshError(
        'MESH_ERR_CA_RATE_LIMITED',
        `CSR signing: ${maxConcurrent} already in flight, retry later`,
        {
          details: { retryAfterMs: 50, limit: 'concurrency' },
        },
      );
    if (maxPerSecond > 0) {
      const now = this.clock.monotonic();
      this.tokens = Math.min(
        Math.max(1, maxPerSecond),
        this.tokens + ((now - this.last) * maxPerSecond) / 1000,
      );
      this.last = now;
      if (this.tokens < 1) {
        const retryAfterMs = Math.ceil(((1 - this.tokens) * 1000) / maxPerSecond);
        throw new MeshError(
          'MESH_ERR_CA_RATE_LIMITED',
          `CSR signing rate limit (${maxPerSecond}/s) reached, retry in ${retryAfterMs} ms`,
          {
            details: { retryAfterMs, limit: 'rate' },
          },
        );
      }
      this.tokens -= 1;
    }
    this.inFlight++;
    try {
      return await fn();
    } finally {
      this.inFlight--;
    }
  }
}
