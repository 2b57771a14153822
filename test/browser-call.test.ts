import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { PROJECT_ROOT, startServer, type TestServer } from './helpers/server';

/**
 * The reason the server exists, proved in real browsers: two pages of the demo (public/demo/) call
 * each other through a real server, with Debian's Chromium driven by playwright-core (never a
 * downloaded browser). Every packet stays on loopback (see BROWSER-TESTS.md for why each flag).
 */

const CHROMIUM = '/usr/bin/chromium';
const IN_CI = process.env.CI === 'true';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const ARTIFACTS = path.join(PROJECT_ROOT, 'test-artifacts');
/** The committed screenshot: written when missing, or refreshed with UPDATE_DEMO_PNG=1. */
const DOCS_PNG = path.join(PROJECT_ROOT, 'docs', 'demo.png');
const ROOM = 'browser-call';
const STEP_TIMEOUT_MS = 15000;

const CHROMIUM_FLAGS = [
  '--no-sandbox', // headless as root
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--ignore-certificate-errors', // the dev certificate is self-signed
  '--autoplay-policy=no-user-gesture-required', // the callee's remote video plays without a click
  // Nothing but loopback: no background requests, no DNS look-ups of Google hosts, no QUIC.
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost , EXCLUDE [::1]',
  // WebRTC offers loopback candidates only with this (and the page signals only those).
  '--allow-loopback-in-peer-connection',
  // Lets the test read the browser's command line back (CDP Browser.getBrowserCommandLine).
  '--enable-automation',
];
/** Without this, WebRTC joins the mDNS multicast group on the real network interface. */
const OUR_DISABLED_FEATURES = ['WebRtcHideLocalIpsWithMdns'];
const DISABLE_FEATURES = '--disable-features=';

/** What public/demo/demo.js exposes on `window`, as far as this test reads it. */
interface DemoEnvelope {
  from: string;
  jsongle: { action: string; reason?: string; description?: { candidate?: { candidate: string } } };
}
interface Demo {
  state: {
    connection: string;
    room: { rid: string; kind: string; members: { uid: string }[] } | null;
    call: { state: string; endReason: string; remoteActive?: boolean } | null;
    errors: { errorCode?: number; errorDetails?: string }[];
  };
  pc: { connectionState: string } | null;
  log: { dir: 'in' | 'out'; envelope: DemoEnvelope }[];
  timings: { proposed?: number; connected?: number };
}
// The page's globals, for the functions the test runs inside it.
declare const window: { demo: Demo };
declare const document: { querySelector(selector: string): { videoWidth: number } | null };

/**
 * Chromium honours only its last --disable-features flag, and playwright passes its own list: ours
 * goes last, merged with playwright's, whose flag is dropped. A short first launch (no page, so no
 * WebRTC) reads playwright's list from the browser itself rather than from playwright's internals.
 */
async function playwrightDisabledFeatures(): Promise<string | undefined> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  try {
    return await commandLineFlag(await browser.newBrowserCDPSession(), DISABLE_FEATURES);
  } finally {
    await browser.close();
  }
}

async function commandLineFlag(cdp: { send(method: 'Browser.getBrowserCommandLine'): Promise<{ arguments: string[] }> }, prefix: string) {
  const { arguments: args } = await cdp.send('Browser.getBrowserCommandLine');
  return args.filter((arg) => arg.startsWith(prefix)).at(-1);
}

async function launchBrowser(userDataDir: string): Promise<BrowserContext> {
  const theirs = await playwrightDisabledFeatures();
  const features = [...(theirs?.slice(DISABLE_FEATURES.length).split(',') ?? []), ...OUR_DISABLED_FEATURES];
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    ignoreDefaultArgs: theirs === undefined ? [] : [theirs],
    args: [...CHROMIUM_FLAGS, `${DISABLE_FEATURES}${features.join(',')}`],
    ignoreHTTPSErrors: true,
    viewport: { width: 1100, height: 660 },
  });
  // The flag that counts is the last one: it must hold both lists, or the mDNS traffic is back.
  const page = context.pages()[0] ?? (await context.newPage());
  const effective = await commandLineFlag(await context.newCDPSession(page), DISABLE_FEATURES);
  expect(effective?.slice(DISABLE_FEATURES.length).split(',')).toEqual(expect.arrayContaining(features));
  return context;
}

describe('a WebRTC call between two browsers through the server (demo page)', () => {
  // In CI a missing browser fails (the test runs and says why); elsewhere it may skip, loudly.
  const testWithBrowser = HAVE_CHROMIUM || IN_CI ? test : test.skip;
  if (!HAVE_CHROMIUM && !IN_CI) {
    console.warn(
      `\n\n  !!! ${CHROMIUM} is missing: the end-to-end browser test is SKIPPED. ` +
        `Install it with: apt-get install -y --no-install-recommends chromium (.ci/run does) !!!\n`,
    );
  }

  testWithBrowser(
    'two pages call each other, chat, hang up; a third page is refused with 403001',
    async () => {
      if (!HAVE_CHROMIUM) throw new Error(`CI=true and ${CHROMIUM} is missing: .ci/run must install the chromium package`);
      const server: TestServer = await startServer({ demo: 'true' });
      const userDataDir = mkdtempSync(path.join(tmpdir(), 'jsongle-chromium-'));
      const pageErrors: string[] = [];
      let context: BrowserContext | undefined;
      try {
        context = await launchBrowser(userDataDir);
        const browser = context;
        const open = async (name: string, query: Record<string, string>, reuse?: Page): Promise<Page> => {
          const page = reuse ?? (await browser.newPage());
          page.setDefaultTimeout(STEP_TIMEOUT_MS);
          page.on('pageerror', (error) => pageErrors.push(`${name}: ${error.message}`));
          await page.goto(`${server.restUrl}/demo/?${new URLSearchParams({ room: ROOM, autojoin: '1', ...query }).toString()}`);
          return page;
        };
        const inRoom = (page: Page) => page.waitForFunction((rid) => window.demo.state.room?.rid === rid, ROOM);

        // 1. Alice and Bob open the demo; each completes the hello and joins the P2P room.
        const alice = await open('alice', { uid: 'alice', dn: 'Alice' }, context.pages()[0]);
        await inRoom(alice);
        const bob = await open('bob', { uid: 'bob', dn: 'Bob', autoanswer: '1' });
        await inRoom(bob);
        await alice.locator('#members li[data-uid="bob"]').waitFor();
        await expect(alice.locator('#room-info').textContent()).resolves.toContain(`P2P room ${ROOM} with 1 other member`);

        // 2. Alice calls; Bob's page answers by itself (?autoanswer=1), so the time measured is the protocol's.
        await alice.click('#call');
        for (const page of [alice, bob]) {
          await page.waitForFunction(() => window.demo.pc?.connectionState === 'connected' && window.demo.state.call?.state === 'active');
          // ...and the other side's session-info active has come through the server.
          await page.waitForFunction(() => window.demo.state.call?.remoteActive === true);
          await page.waitForFunction(() => (document.querySelector('#remote-video')?.videoWidth ?? 0) > 0);
          await expect(page.locator('#call-state').getAttribute('data-state')).resolves.toBe('active');
        }
        const [aliceTimes, bobTimes] = await Promise.all([alice, bob].map((page) => page.evaluate(() => window.demo.timings)));
        const proposeToConnectedMs = Math.max(aliceTimes?.connected ?? NaN, bobTimes?.connected ?? NaN) - (aliceTimes?.proposed ?? NaN);
        console.log(`browser call: session-propose → both RTCPeerConnections connected in ${proposeToConnectedMs.toFixed(0)} ms`);
        expect(proposeToConnectedMs).toBeGreaterThan(0);
        expect(proposeToConnectedMs).toBeLessThan(STEP_TIMEOUT_MS);

        // The JSONgle flow, in order, as each side saw it; and only loopback candidates were signaled.
        const actions = (page: Page, dir: 'in' | 'out') =>
          page.evaluate(
            (direction) =>
              window.demo.log
                .filter((entry) => entry.dir === direction)
                .map(({ envelope: { jsongle } }) => (jsongle.reason ? `${jsongle.action}/${jsongle.reason}` : jsongle.action)),
            dir,
          );
        const aliceIn = await actions(alice, 'in');
        const aliceOut = await actions(alice, 'out');
        const bobOut = await actions(bob, 'out');
        for (const [seen, expected] of [
          [aliceOut, ['session-propose', 'session-initiate', 'transport-info', 'session-info/active']],
          [
            aliceIn,
            ['session-info/trying', 'session-info/ringing', 'session-proceed', 'session-accept', 'transport-info', 'session-info/active'],
          ],
          [bobOut, ['session-info/ringing', 'session-proceed', 'session-accept', 'transport-info', 'session-info/active']],
        ] as const) {
          // Each expected action is there, and their first occurrences come in the expected order.
          const firsts = expected.map((action) => seen.indexOf(action));
          expect(firsts).not.toContain(-1);
          expect(firsts).toEqual([...firsts].sort((x, y) => x - y));
        }
        for (const page of [alice, bob]) {
          const candidates = await page.evaluate(() =>
            window.demo.log
              .filter((entry) => entry.dir === 'out' && entry.envelope.jsongle.action === 'transport-info')
              .map((entry) => entry.envelope.jsongle.description?.candidate?.candidate ?? ''),
          );
          for (const candidate of candidates) expect(candidate.split(' ')[4]).toMatch(/^(127\.0\.0\.1|::1)$/);
        }

        // 3. Chat both ways with session-text; the sender sees the server's receipt and the peer's.
        await alice.fill('#chat-input', 'Hello Bob');
        await alice.click('#chat-send');
        await bob.locator('#chat-log li.theirs', { hasText: 'Alice: Hello Bob' }).waitFor();
        await alice.locator('#chat-log li.mine[data-mid] .receipts[data-receipts~="server-received"][data-receipts~="received"]').waitFor();
        await bob.fill('#chat-input', 'Hi Alice, I see you');
        await bob.click('#chat-send');
        await alice.locator('#chat-log li.theirs', { hasText: 'Bob: Hi Alice, I see you' }).waitFor();
        await bob.locator('#chat-log li.mine .receipts[data-receipts~="received"]').waitFor();

        // 4. The call in progress, in pictures: a background tab may render black, so Alice's comes first.
        await alice.bringToFront();
        await alice.waitForFunction(() => (document.querySelector('#remote-video')?.videoWidth ?? 0) > 0);
        mkdirSync(ARTIFACTS, { recursive: true });
        await alice.screenshot({ path: path.join(ARTIFACTS, 'browser-call.png') });
        writeFileSync(path.join(ARTIFACTS, 'browser-call.json'), `${JSON.stringify({ proposeToConnectedMs }, null, 2)}\n`);
        if (process.env.UPDATE_DEMO_PNG === '1' || !existsSync(DOCS_PNG)) {
          mkdirSync(path.dirname(DOCS_PNG), { recursive: true });
          await alice.screenshot({ path: DOCS_PNG });
          expect(statSync(DOCS_PNG).size).toBeLessThan(150_000);
        }
        const stats = () =>
          server
            .rest()
            .get('/stats')
            .then((r) => r.body as Record<string, number>);
        await expect(stats()).resolves.toMatchObject({ conferences_count: 1 });

        // 5. A third page cannot join the P2P room: the server refuses with 403001 and the page says so.
        const carol = await open('carol', { uid: 'carol', dn: 'Carol' });
        await carol.locator('#error[data-code="403001"]').waitFor();
        await expect(carol.locator('#error').textContent()).resolves.toMatch(/403001.*full/);
        await expect(carol.evaluate(() => window.demo.state.room)).resolves.toBeNull();

        // 6. Alice hangs up (session-terminate); both pages show the end and close their connections.
        await alice.click('#hangup');
        for (const page of [alice, bob]) {
          await page.waitForFunction(() => window.demo.state.call?.state === 'ended' && window.demo.pc === null);
          await expect(page.locator('#call-state').textContent()).resolves.toMatch(/^ended/);
        }
        await expect(bob.evaluate(() => window.demo.state.call?.endReason)).resolves.toBe('terminated');

        // 7. Alice leaves the room, Bob and Carol close their pages: no room is left on the server.
        await alice.click('#leave');
        await alice.waitForFunction(() => window.demo.state.room === null);
        await bob.close();
        await carol.close();
        await expect(eventually(stats, (s) => s.conferences_count === 0)).resolves.toMatchObject({ conferences_count: 0 });

        // 8. The MUC mode: Alice joins a #muc# room from the field, Dave by URL; chat only, no calls.
        const muc = '#muc#lobby';
        await alice.fill('#room', muc);
        await alice.click('#join');
        await alice.waitForFunction((rid) => window.demo.state.room?.kind === 'muc' && window.demo.state.room.rid === rid, muc);
        const dave = await open('dave', { uid: 'dave', dn: 'Dave', room: muc });
        await dave.waitForFunction(() => window.demo.state.room?.kind === 'muc');
        await alice.locator('#members li[data-uid="dave"]').waitFor();
        await expect(alice.locator('#call').isDisabled()).resolves.toBe(true);
        await dave.fill('#chat-input', 'Hello lobby');
        await dave.click('#chat-send');
        // In a MUC room the relayed `from` is "rid/uid": the page names the sender from it.
        await alice.locator('#chat-log li.theirs', { hasText: 'Dave: Hello lobby' }).waitFor();
        await dave.locator('#chat-log li.mine .receipts[data-receipts="server-received"]').waitFor();
        expect(pageErrors).toEqual([]);
      } finally {
        await context?.close();
        rmSync(userDataDir, { recursive: true, force: true });
        await server.close();
      }
    },
    60000,
  );
});

/** Reads until `done` holds (or the time is up, then returns the last value read). */
async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = STEP_TIMEOUT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
