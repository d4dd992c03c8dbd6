export { MemcacheStore } from './memcache-store.js'
export type { MemcacheEvent, MemcacheStoreOptions } from './memcache-store.js'
export { parseConnectionString, formatServer, isHostName } from './connection-string.js'
export type { ServerAddress } from './connection-string.js'
