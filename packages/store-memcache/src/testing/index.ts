export { startMemcached, memcachedAvailable, freePort, MEMCACHED_BIN } from './memcached.js'
export type { Memcached, MemcachedOptions } from './memcached.js'
export { spawnFaultProxy, startFaultProxy } from './fault-proxy.js'
export type { Fault, FaultPath, FaultProxy } from './fault-proxy.js'
