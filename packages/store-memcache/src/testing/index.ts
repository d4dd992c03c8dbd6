export { startMemcached, memcachedAvailable, freePort, MEMCACHED_BIN } from './memcached.js'
export type { Memcached } from './memcached.js'
