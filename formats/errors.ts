/**
 * The error types of iebs. Every error the tool reports is an `IebsError` with a
 * stable string `code`, a one-line message that names what and where, and optional
 * `data`. The CLI maps the class to an exit code in one place (cli/errors.ts).
 */

/**
 * Every code an IebsError may carry: one list, so a code is a name the compiler checks,
 * never a string compared by hope. Grouped by the class that usually carries it.
 */
export type ErrorCode =
  // FormatError: bytes that do not follow SPEC.md
  | 'absurd-size' | 'bad-block-order' | 'bad-checksum' | 'bad-codec' | 'bad-entry' | 'bad-escape' | 'bad-flags' | 'bad-hash'
  | 'bad-hex' | 'bad-id' | 'bad-index' | 'bad-key' | 'bad-kind' | 'bad-line' | 'bad-magic' | 'bad-mode' | 'bad-name' | 'bad-nonce'
  | 'bad-number' | 'bad-owner' | 'bad-path' | 'bad-pgp' | 'bad-quote' | 'bad-size' | 'bad-time' | 'bad-uuid' | 'bad-volume'
  | 'broken-chain' | 'codec-corrupt' | 'codec-size' | 'codec-unknown' | 'duplicate-path' | 'line-too-long' | 'trailing-data'
  | 'truncated' | 'unknown-cipher' | 'unknown-version'
  // AuthError: what does not authenticate
  | 'auth-failed' | 'bad-signature' | 'renamed' | 'replayed' | 'unauthorized' | 'untrusted'
  // KeyError
  | 'key-exists' | 'key-unreadable' | 'no-key' | 'no-verifier' | 'passphrase-file' | 'passphrase-needed' | 'wrong-key' | 'wrong-passphrase'
  // NotFoundError: one kind for what is missing
  | 'not-found' | 'short-read' | 'missing-volume' | 'no-repository' | 'no-snapshot' | 'bad-snapshot' | 'no-path'
  // LockedError
  | 'locked' | 'lock-live' | 'lock-lost'
  // UsageError
  | 'bad-config' | 'bad-flag' | 'bad-object' | 'bad-pattern' | 'bad-regex' | 'bad-repo' | 'bad-source' | 'bad-system' | 'missing-argument' | 'no-rule' | 'no-source' | 'unsupported-repo'
  // IoError: the storage contract's codes (engine/storage/storage.ts), and the restore target's
  | 'exists' | 'permission' | 'no-space' | 'transient' | 'permanent' | 'in-the-way' | 'io'
  // IebsError: the machinery itself
  | 'internal' | 'interrupted' | 'pgp-thread' | 'reader-closed' | 'reader-failed' | 'reader-order' | 'walk-failed' | 'writer-closed' | 'writer-failed';

/** Base class of every iebs error. */
export class IebsError extends Error {
  readonly code: ErrorCode;
  readonly data: Record<string, unknown>;
  /** True when the run may go on after reporting it (a source file vanished). */
  readonly recoverable: boolean;
  constructor(code: ErrorCode, message: string, options: { cause?: unknown; data?: Record<string, unknown>; recoverable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.data = options.data ?? {};
    this.recoverable = options.recoverable ?? false;
  }
}

/** Bytes that do not follow SPEC.md: malformed, truncated, unknown version, absurd size. */
export class FormatError extends IebsError {
  constructor(code: ErrorCode, message: string, options: { cause?: unknown; data?: Record<string, unknown> } = {}) {
    super(code, message, options);
  }
}

/** A ciphertext, signature or checksum that does not authenticate: tampering or the wrong key. */
export class AuthError extends IebsError {}

/** A key file that is missing, unreadable, of the wrong kind, or a wrong passphrase. */
export class KeyError extends IebsError {}

/** Something the command needs does not exist (repository, snapshot, volume). */
export class NotFoundError extends IebsError {}

/** Another process holds the repository lock. */
export class LockedError extends IebsError {}

/** Bad command-line arguments. */
export class UsageError extends IebsError {}

/** The destination or the source failed at the I/O level (full disk, permission). */
export class IoError extends IebsError {}
