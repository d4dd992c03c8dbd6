// Prints the Markdown tables of a results file again (after a change to how they are shown):
//   node dist/tables.js results/FILE.json

import { readFileSync } from 'node:fs'
import { memoryTable, profileTable, table } from './report.js'
import type { MemoryRow, ProfileRow, Row } from './report.js'
import { baselineOf } from './servers.js'
import { trafficTable } from './store-traffic.js'
import type { TrafficRow } from './store-traffic.js'

const file = process.argv[2]
if (file === undefined) {
  process.stderr.write('usage: node dist/tables.js results/FILE.json\n')
  process.exit(2)
}
const results = JSON.parse(readFileSync(file, 'utf8')) as {
  rows: Row[]
  helloRows?: Row[]
  profiles?: ProfileRow[]
  traffic?: TrafficRow[]
  memory: MemoryRow[]
}
const parts = [table(results.rows)]
if (results.helloRows !== undefined) {
  parts.push(table(results.helloRows))
}
if (results.profiles !== undefined) {
  parts.push(profileTable(results.profiles, baselineOf))
}
if (results.traffic !== undefined) {
  parts.push(trafficTable(results.traffic))
}
parts.push(memoryTable(results.memory))
process.stdout.write(`${parts.join('\n\n')}\n`)
