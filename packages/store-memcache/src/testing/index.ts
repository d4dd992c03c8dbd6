export { startMemcached, memcachedAvailable, freePort, MEMCACHED_BIN } from './memcached.js'
export type { Memcached, MemcachedOptions } from './memcached.js'
export { startFaultProxy } from './fault-proxy.js'
export type { Fault, FaultProxy } from './fault-proxy.js'
