// A TCP proxy on loopback between the service and a real server (PostgreSQL), that tests use to cause network
// faults: cut (every connection destroyed, new ones refused), pause (nothing passes either way, new connections
// hang) and restore. Closed after the test.
import { connect, createServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'

/** What passes through the proxy now. */
export type ProxyMode = 'open' | 'cut' | 'paused'

export interface TcpProxy {
  /** The loopback port to connect to instead of the target's. */
  port: number
  /** `url` with its host and port replaced by the proxy's. */
  urlThrough(url: string): string
  mode(): ProxyMode
  /** Destroys every connection (both sides) and refuses new ones (accepted, then reset at once). */
  cut(): void
  /**
   * Stops forwarding in both directions: a statement sent now gets no answer, and a new connection is accepted but
   * its handshake never arrives. Data held while paused is delivered on `restore()`, unless its sender closed the
   * connection meanwhile (then it is lost, as on a real partition).
   */
  pause(): void
  /** Forwards again (what a pause held is delivered); after `cut()`, accepts new connections again. */
  restore(): void
  /** Connections accepted so far. */
  accepted(): number
  /** Connections open now. */
  open(): number
  /**
   * The local ports of the proxy's connections to the target: the server sees the proxied clients coming from these.
   */
  upstreamPorts(): number[]
}

interface Link {
  client: Socket
  server: Socket
  /** Chunks held while paused, in order, with the socket each must be written to. */
  held: { to: Socket; chunk: Buffer }[]
}

/**
 * Starts a proxy on 127.0.0.1 to `target` (a loopback address): open at first, closed with all its links after the
 * test.
 */
export async function startTcpProxy(t: TestContext, target: { host: string; port: number }): Promise<TcpProxy> {
  let mode: ProxyMode = 'open'
  let accepted = 0
  const links = new Set<Link>()

  const destroyLink = (link: Link): void => {
    link.held.length = 0
    link.client.destroy()
    link.server.destroy()
    links.delete(link)
  }

  const server = createServer((client) => {
    accepted++
    if (mode === 'cut') {
      client.resetAndDestroy()
      return
    }
    const upstream = connect(target.port, target.host)
    const link: Link = { client, server: upstream, held: [] }
    links.add(link)
    const forward = (to: Socket) => (chunk: Buffer) => {
      if (mode === 'paused' || link.held.length > 0) link.held.push({ to, chunk })
      else to.write(chunk)
    }
    client.on('data', forward(upstream))
    upstream.on('data', forward(client))
    // One side closing ends the link; while paused its held data is dropped, as a partition would lose it.
    for (const socket of [client, upstream]) {
      socket.on('error', () => destroyLink(link))
      socket.on('close', () => destroyLink(link))
      socket.on('end', () => {
        if (mode === 'paused' || link.held.length > 0) destroyLink(link)
        else (socket === client ? upstream : client).end()
      })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  t.after(async () => {
    for (const link of links) destroyLink(link)
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  return {
    port,
    urlThrough(url) {
      const through = new URL(url)
      through.hostname = '127.0.0.1'
      through.port = String(port)
      return through.toString()
    },
    mode: () => mode,
    cut() {
      mode = 'cut'
      for (const link of links) destroyLink(link)
    },
    pause() {
      mode = 'paused'
    },
    restore() {
      mode = 'open'
      for (const link of links) {
        for (const { to, chunk } of link.held.splice(0)) to.write(chunk)
      }
    },
    accepted: () => accepted,
    open: () => links.size,
    upstreamPorts: () =>
      [...links].map((link) => link.server.localPort).filter((port): port is number => port !== undefined),
  }
}
