// The memory limiters whose bytes per requester the benchmark measures (memory.ts).

export const MEMORY_LIMITERS = ['slidelimit-memory', 'hono-rate-limiter', 'rlf-memory'] as const
