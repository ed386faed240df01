// What the browser tests share: the pipeline's binaries as child processes
// (built by `cargo test`), free ports, readiness, and Debian's Chromium.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const env = process.env;
export const target = env.CARGO_TARGET_DIR || join(env.HOME, '.cache/bandvote/target');
// The workspace's binaries: scripts/test.sh builds them in the `demo` profile.
export const binDir = env.BANDVOTE_BIN_DIR || join(target, 'debug');
export const artifacts = env.BANDVOTE_ARTIFACTS || join(env.HOME, '.cache/bandvote/artifacts');
export const brokers = env.BANDVOTE_KAFKA_BROKERS || '127.0.0.1:9092';
export const wasm = env.BANDVOTE_INTAKE_WASM || join(target, 'wasm32-wasip2/wasm/bandvote_intake.wasm');

const children = [];

/// Stop every process `start` started (call from `after`).
export function stopAll() {
  children.forEach((c) => c.kill('SIGTERM'));
}

export function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/// Start a debug binary of the workspace with `extraEnv`.
export function start(bin, extraEnv) {
  const child = spawn(join(binDir, bin), [], { env: { ...env, RUST_LOG: 'warn', ...extraEnv }, stdio: ['ignore', 'inherit', 'inherit'] });
  children.push(child);
  return child;
}

export async function waitReady(url, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    try { if ((await fetch(url)).ok) return; } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`not ready: ${url}`);
}

/// Debian's Chromium, headless, without a browser download.
export function launchChromium() {
  return chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
}
