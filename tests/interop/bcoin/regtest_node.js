// Runs bcoin, an independent full node, as a regtest peer for tests/interop_bcoin.rs.
//
// usage: node regtest_node.js <datadir> <p2p-port> <http-port> <api-key> [peer host:port ...]
//
// bcoin 1.0.2 predates Bitcoin Core 0.16, which made segwit (and later BIP34/65/66) active from
// the start on regtest; its regtest still waits for versionbits signalling. The rules are set to
// Core's current regtest here, so both nodes judge the same blocks by the same rules.
// Only loopback is touched: bcoin listens on 127.0.0.1, dials only the given peers, and its
// public-address discovery (a DNS query to an outside resolver) is switched off.
'use strict';

const bcoin = require('bcoin');

const [prefix, port, httpPort, apiKey, ...peers] = process.argv.slice(2);
if (!prefix || !port || !httpPort || !apiKey) {
  console.error('usage: node regtest_node.js <datadir> <p2p-port> <http-port> <api-key> [peer ...]');
  process.exit(2);
}

const {thresholdStates} = require('bcoin/lib/blockchain/common');

const regtest = bcoin.Network.get('regtest');
regtest.block.bip34height = 1;
regtest.block.bip65height = 1;
regtest.block.bip66height = 1;

const node = new bcoin.FullNode({
  network: 'regtest',
  memory: true,
  prefix,
  workers: false,
  listen: true,
  host: '127.0.0.1',
  port: Number(port),
  publicHost: '127.0.0.1',
  httpHost: '127.0.0.1',
  httpPort: Number(httpPort),
  apiKey,
  only: peers,
  maxInbound: 8,
  logConsole: true,
  logLevel: process.env.BCOIN_LOG_LEVEL || 'info'
});
// Segwit and CSV active from genesis, as on Core's regtest (bcoin 1.0.2 has no switch for it).
const getState = node.chain.getState.bind(node.chain);
node.chain.getState = async (prev, deployment) =>
  ['segwit', 'csv'].includes(deployment.name)
    ? thresholdStates.ACTIVE
    : getState(prev, deployment);
node.pool.discoverExternal = async () => {};
node.pool.discoverGateway = async () => {};
node.pool.discoverSeeds = async () => {};

(async () => {
  await node.ensure();
  await node.open();
  await node.connect();
  node.startSync();
  console.log('bcoin ready');
})().catch((err) => {
  console.error(err);
  process.exit(1);
});

const stop = async () => {
  await node.close().catch(() => {});
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
