// @hono/node-server 1.19 (node-server.test-helpers.ts).
import { serve } from '@hono/node-server-v1'
import { describe } from 'vitest'
import { servesThrough } from './node-server.test-helpers.js'

describe('served by @hono/node-server 1', () => {
  servesThrough(serve)
})
