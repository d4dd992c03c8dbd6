// The autocannon load generator, in its own process: node autocannon-load.js URL SECONDS
// CONNECTIONS CLIENTS. Prints one JSON line: { rps, p99Ms, requests, non2xx }.

import autocannon from 'autocannon'

const [url = '', seconds = '5', connections = '50', clients = '1'] = process.argv.slice(2)
let n = 0
const result = await autocannon({
  url,
  duration: Number(seconds),
  connections: Number(connections),
  requests: [
    {
      setupRequest: (request) => {
        n = (n + 1) % Number(clients)
        return {
          ...request,
          headers: { 'x-client': Number(clients) <= 1 ? 'hot-client' : `client-${n}` },
        }
      },
    },
  ],
})
process.stdout.write(
  `${JSON.stringify({
    rps: result.requests.average,
    p99Ms: result.latency.p99,
    requests: result.requests.total,
    non2xx: result.non2xx,
  })}\n`,
)
