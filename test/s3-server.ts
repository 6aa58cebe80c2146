/**
 * Starts the tests' S3 server (test/s3-server-main.ts) in a child process on 127.0.0.1
 * and says how to reach it: the endpoint, the AWS_* environment a client or the CLI
 * needs, and the server's counts of requests and bytes. s3rver's fixed account
 * (S3RVER/S3RVER) signs the requests; no real credential is ever used. The server runs
 * with OpenSSL's legacy provider: s3rver seals its listing continuation tokens with DES,
 * which OpenSSL 3 leaves out by default (every second page of a listing would be a 500).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers.js';

const MAIN = fileURLToPath(new URL('./s3-server-main.js', import.meta.url));

/** A running test server. */
export interface S3Server {
  endpoint: string;
  /** The folder the server keeps its buckets in (a bucket is a subfolder). */
  dir: string;
  bucket: string;
  /** What a client needs in its environment to reach the server. */
  env: Record<string, string>;
  /** Requests and response body bytes per HTTP method since the last reset. */
  stats(reset?: boolean): Promise<Record<string, { requests: number; bytes: number }>>;
  close(): Promise<void>;
}

/** Starts a server; `conditional: false` makes it ignore `If-None-Match`, as some stores do. */
export async function startS3Server(o: { conditional?: boolean; bucket?: string } = {}): Promise<S3Server> {
  const bucket = o.bucket ?? 'iebs-test';
  const dir = tempDir('s3rver');
  const child: ChildProcess = spawn(process.execPath, ['--openssl-legacy-provider', MAIN], {
    env: { ...process.env, IEBS_S3_SERVER_DIR: dir, IEBS_S3_BUCKET: bucket, IEBS_S3_CONDITIONAL: o.conditional === false ? '0' : '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += String(d);
      const m = /\{"port":(\d+)\}/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (c) => reject(new Error(`the S3 server exited (${c}) before listening`)));
  });
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    dir,
    bucket,
    env: {
      AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_S3: endpoint,
      AWS_EC2_METADATA_DISABLED: 'true', AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    },
    stats: async (reset = false) => (await (await fetch(`${endpoint}/__stats`, { method: reset ? 'POST' : 'GET' })).json()) as Record<string, { requests: number; bytes: number }>,
    close: async () => {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}
