// @hono/node-server 2.x (node-server.test-helpers.ts).
import { serve } from '@hono/node-server'
import { describe } from 'vitest'
import { servesThrough } from './node-server.test-helpers.js'

describe('served by @hono/node-server 2', () => {
  servesThrough(serve)
})
