// A jspurefix acceptor playing the broker for `xmc live`: it answers MarketDataRequest with a
// snapshot and then incremental refreshes (a random walk per symbol), and fills every order at its
// limit price (New, then Fill). Every application message it receives is printed as a JSON line.
// Usage: node broker.js PORT SENDER TARGET DICTIONARY_XML SYMBOL:PRICE[,SYMBOL:PRICE...] TICK SECONDS
'use strict'
require('reflect-metadata')
const { SessionLauncher } = require('jspurefix/dist/runtime')
const { AsciiSession } = require('jspurefix/dist/transport')
const { MsgType } = require('jspurefix/dist/types')
const { JsFixWinstonLogFactory, WinstonLogger } = require('jspurefix/dist/config')

const [port, sender, target, dict, book, tickArg, secondsArg] = process.argv.slice(2)
const tick = Number(tickArg)
const mids = Object.fromEntries(book.split(',').map(s => { const [k, v] = s.split(':'); return [k, Number(v)] }))
let seed = 12345
function rand () { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
function emit (obj) { process.stdout.write(JSON.stringify(obj) + '\n') }

class Broker extends AsciiSession {
  constructor (config) {
    super(config)
    this.execId = 0
    this.timers = []
  }

  quote (symbol) {
    const mid = mids[symbol]
    return { bid: mid - tick, ask: mid + tick }
  }

  onApplicationMsg (msgType, view) {
    const o = view.toObject()
    emit({ msgType, body: o })
    if (msgType === MsgType.MarketDataRequest) {
      for (const rel of o.InstrmtMDReqGrp.NoRelatedSym) {
        const symbol = rel.Instrument.Symbol
        const q = this.quote(symbol)
        this.send(MsgType.MarketDataSnapshotFullRefresh, {
          MDReqID: o.MDReqID, Instrument: { Symbol: symbol },
          MDFullGrp: { NoMDEntries: [{ MDEntryType: '0', MDEntryPx: q.bid, MDEntrySize: 50 },
            { MDEntryType: '1', MDEntryPx: q.ask, MDEntrySize: 50 }] }
        })
        this.timers.push(setInterval(() => {
          mids[symbol] += tick * Math.round((rand() - 0.5) * 6)
          const n = this.quote(symbol)
          this.send(MsgType.MarketDataIncrementalRefresh, {
            MDReqID: o.MDReqID,
            MDIncGrp: { NoMDEntries: [
              { MDUpdateAction: '1', MDEntryType: '0', Instrument: { Symbol: symbol }, MDEntryPx: n.bid, MDEntrySize: 50 },
              { MDUpdateAction: '1', MDEntryType: '1', Instrument: { Symbol: symbol }, MDEntryPx: n.ask, MDEntrySize: 50 }] }
          })
        }, 50))
      }
    } else if (msgType === MsgType.NewOrderSingle) {
      const qty = o.OrderQtyData.OrderQty
      const base = { OrderID: `BRK-${o.ClOrdID}`, ClOrdID: o.ClOrdID, Instrument: { Symbol: o.Instrument.Symbol },
        Side: o.Side, OrderQtyData: { OrderQty: qty }, Price: o.Price, TransactTime: new Date() }
      if (o.Account) base.Account = o.Account
      this.send(MsgType.ExecutionReport, { ...base, ExecID: `E${++this.execId}`, ExecType: '0', OrdStatus: '0',
        LeavesQty: qty, CumQty: 0, AvgPx: 0 })
      this.send(MsgType.ExecutionReport, { ...base, ExecID: `E${++this.execId}`, ExecType: 'F', OrdStatus: '2',
        LastQty: qty, LastPx: o.Price, LeavesQty: 0, CumQty: qty, AvgPx: o.Price })
    } else if (msgType === MsgType.OrderCancelRequest) {
      this.send(MsgType.OrderCancelReject, { OrderID: `BRK-${o.OrigClOrdID}`, ClOrdID: o.ClOrdID,
        OrigClOrdID: o.OrigClOrdID, OrdStatus: '2', CxlRejResponseTo: '1', CxlRejReason: 0, Text: 'too late to cancel' })
    }
  }

  onReady (view) { emit({ event: 'ready' }) }
  onLogon (view, user, password) { emit({ event: 'logon', user }); return true }
  onStopped () { this.timers.forEach(clearInterval); emit({ event: 'stopped' }) }
  onDecoded (msgType, txt) {}
  onEncoded (msgType, txt) {}
}

class Launcher extends SessionLauncher {
  constructor () {
    super(null, null, new JsFixWinstonLogFactory(WinstonLogger.consoleOptions('error')))
    this.acceptorConfig = {
      application: { type: 'acceptor', name: 'xmc_broker', tcp: { host: '127.0.0.1', port: Number(port) },
        protocol: 'ascii', dictionary: dict },
      EncryptMethod: 0, ResetSeqNumFlag: true, HeartBtInt: 30,
      SenderCompId: sender, TargetCompID: target, BeginString: 'FIX.4.4'
    }
  }

  makeFactory (config) { return { makeSession: (c) => new Broker(c) } }
}

// say where it listens once it really does: the port the OS chose when given 0 (the socket is kept, never
// released and reused), or why it could not listen
const net = require('net')
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  this.once('listening', () => emit({ event: 'listening', port: this.address().port }))
  this.once('error', (e) => { emit({ event: 'error', error: String(e) }); process.exit(1) })
  return listen.apply(this, args)
}
new Launcher().run().catch((e) => { emit({ event: 'error', error: String(e) }); process.exit(1) })
setTimeout(() => process.exit(0), Number(secondsArg) * 1000)
