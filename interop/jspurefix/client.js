// A jspurefix initiator that trades against `xmc venue`: logon, market data, an IOC order that
// fills, a resting order and its cancel, then logout. Every application message it receives is
// printed to stdout as one JSON line, so the test can check what happened.
// Usage: node client.js HOST PORT SENDER TARGET DICTIONARY_XML SYMBOL ACCOUNT PRICE_NEAR PRICE_FAR
'use strict'
require('reflect-metadata')
const { SessionLauncher } = require('jspurefix/dist/runtime')
const { AsciiSession } = require('jspurefix/dist/transport')
const { MsgType } = require('jspurefix/dist/types')
const { JsFixWinstonLogFactory, WinstonLogger } = require('jspurefix/dist/config')

const [host, port, sender, target, dict, symbol, account, priceNear, priceFar] = process.argv.slice(2)

const tag = String(Date.now() % 1000000)
const id = (name) => `JS-${name}-${tag}`

function emit (obj) { process.stdout.write(JSON.stringify(obj) + '\n') }

class Client extends AsciiSession {
  constructor (config) {
    super(config)
    this.logReceivedMsgs = true
    this.reports = 0
  }

  onApplicationMsg (msgType, view) {
    emit({ msgType, body: view.toObject() })
    if (msgType === MsgType.ExecutionReport) {
      const o = view.toObject()
      if (o.ClOrdID === id('REST') && o.ExecType === '0') {
        this.send(MsgType.OrderCancelRequest, {
          OrigClOrdID: id('REST'), ClOrdID: id('CXL'), Account: account, Side: '1',
          TransactTime: new Date(), Instrument: { Symbol: symbol }, OrderQtyData: { OrderQty: 1 }
        })
      }
      if (o.ClOrdID === id('CXL') && o.ExecType === '4') {
        setTimeout(() => this.done(), 200)
      }
    }
  }

  onReady (view) {
    emit({ event: 'ready' })
    this.send(MsgType.MarketDataRequest, {
      MDReqID: 'JS-MD-1', SubscriptionRequestType: '1', MarketDepth: 1, MDUpdateType: 1,
      MDReqGrp: { NoMDEntryTypes: [{ MDEntryType: '0' }, { MDEntryType: '1' }] },
      InstrmtMDReqGrp: { NoRelatedSym: [{ Instrument: { Symbol: symbol } }] }
    })
    const order = (id, price, tif) => ({
      ClOrdID: id, Account: account, HedgeFlag: '2', Side: '1', TransactTime: new Date(),
      Instrument: { Symbol: symbol }, OrderQtyData: { OrderQty: 1 }, OrdType: '2', Price: Number(price),
      TimeInForce: tif
    })
    this.send(MsgType.NewOrderSingle, order(id('IOC'), priceNear, '3'))
    this.send(MsgType.NewOrderSingle, order(id('REST'), priceFar, '0'))
    setTimeout(() => this.done(), 15000)
  }

  onLogon (view, user, password) { return true }
  onStopped () { emit({ event: 'stopped' }); setTimeout(() => process.exit(0), 100) }
  onDecoded (msgType, txt) {}
  onEncoded (msgType, txt) {}
}

class Launcher extends SessionLauncher {
  constructor () {
    super(null, null, new JsFixWinstonLogFactory(WinstonLogger.consoleOptions('error')))
    this.initiatorConfig = {
      application: { reconnectSeconds: 1, type: 'initiator', name: 'xmc_interop', tcp: { host, port: Number(port) },
        protocol: 'ascii', dictionary: dict },
      EncryptMethod: 0, ResetSeqNumFlag: true, HeartBtInt: 30,
      SenderCompId: sender, TargetCompID: target, BeginString: 'FIX.4.4'
    }
  }

  makeFactory (config) { return { makeSession: (c) => new Client(c) } }
}

new Launcher().run().catch((e) => { emit({ event: 'error', error: String(e) }); process.exit(1) })
