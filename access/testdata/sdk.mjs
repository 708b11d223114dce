// Drives the official PubNub JavaScript SDK for access/sdk_test.go.
//
//   node sdk.mjs SDKDIR parse TOKEN
//       prints pubnub.parseToken(TOKEN) as JSON.
//   node sdk.mjs SDKDIR drive ORIGIN PUBKEY SUBKEY SECRET
//       makes signed requests (publish by GET and POST, signal, channel-group
//       add, subscribe to a group, grant, revoke) to the capturing server at
//       ORIGIN and prints {"token": granted token, "parsed": parseToken(it)}.
//
// SDKDIR is sdktest/, where npm installed the SDK.
import { createRequire } from 'node:module';
import path from 'node:path';

const [sdkDir, mode, ...args] = process.argv.slice(2);
const PubNub = createRequire(path.join(sdkDir, 'package.json'))('pubnub');

const strange = "+ ! * ' ( ) ~ % & = ? / ü 😀";

async function drive([origin, publishKey, subscribeKey, secretKey]) {
  const pn = new PubNub({
    publishKey, subscribeKey, secretKey, origin,
    userId: 'sdk-user ü',
    ssl: false,
    heartbeatInterval: 0,
    logVerbosity: false,
    enableEventEngine: true,
  });
  await pn.publish({ channel: 'room 1,ü', message: { a: 1, s: strange }, meta: { q: strange } });
  await pn.publish({ channel: 'ch', message: { a: 2 }, sendByPost: true });
  await pn.signal({ channel: 'sig ch', message: strange });
  await pn.channelGroups.addChannels({ channelGroup: 'g 1', channels: ['a b', 'c~d', 'é', "x'y"] });
  const token = await pn.grantToken({
    ttl: 15,
    authorized_uuid: 'alice',
    resources: {
      channels: { 'ch-1': { read: true, write: true }, 'ch 2,ü': { read: true } },
      groups: { 'cg-1': { read: true, manage: true } },
      uuids: { 'u-1': { get: true, update: true } },
    },
    patterns: { channels: { '^room-.*': { read: true, write: true } } },
    meta: { k: 'v', n: 3 },
  });
  await pn.revokeToken(token);
  await new Promise((resolve, reject) => {
    pn.addListener({
      status: (s) => {
        if (s.category === 'PNConnectedCategory') resolve();
        else if (s.error) reject(new Error(`subscribe: ${s.category}`));
      },
    });
    pn.subscribe({ channelGroups: ['g 1'], channels: ['c 1'] });
  });
  const parsed = pn.parseToken(token);
  delete parsed.signature;
  console.log(JSON.stringify({ token, parsed }));
}

if (mode === 'parse') {
  const pn = new PubNub({ subscribeKey: 'sub', userId: 'u' });
  const parsed = pn.parseToken(args[0]);
  delete parsed.signature;
  console.log(JSON.stringify(parsed));
} else if (mode === 'drive') {
  await drive(args);
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
process.exit(0);
