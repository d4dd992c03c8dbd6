// A fault proxy in a process of its own (spawnFaultProxy): `node fault-proxy-process.js
// host:port`. It says `{ type: 'ready', port }` on its IPC channel, applies `{ type: 'set',
// id, fault }` and answers `{ type: 'done', id }`, and exits when its parent goes.

import { startFaultProxy } from './fault-proxy.js'
import type { Fault } from './fault-proxy.js'

const target = process.argv[2]
if (target === undefined || process.send === undefined) {
  process.stderr.write('usage: node fault-proxy-process.js host:port (with an IPC channel)\n')
  process.exit(2)
}
const proxy = await startFaultProxy(target)
const send = process.send.bind(process)
process.on('message', (message: { type: string; id: number; fault: Fault }) => {
  if (message.type === 'set') {
    void proxy.set(message.fault).then(() => send({ type: 'done', id: message.id }))
  }
})
process.on('disconnect', () => {
  process.exit(0)
})
send({ type: 'ready', port: proxy.port })
