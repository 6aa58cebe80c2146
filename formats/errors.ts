/**
 * The error types of iebs. Every error the tool reports is an `IebsError` with a
 * stable string `code`, a one-line message that names what and where, and optional
 * `data`. The CLI maps the class to an exit code in one place (cli/errors.ts).
 */

/** Base class of every iebs error. */
export class IebsError extends Error {
  readonly code: string;
  readonly data: Record<string, unknown>;
  /** True when the run may go on after reporting it (a source file vanished). */
  readonly recoverable: boolean;
  constructor(code: string, message: string, options: { cause?: unknown; data?: Record<string, unknown>; recoverable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.data = options.data ?? {};
    this.recoverable = options.recoverable ?? false;
  }
}

/** Bytes that do not follow SPEC.md: malformed, truncated, unknown version, absurd size. */
export class FormatError extends IebsError {
  constructor(code: string, message: string, options: { cause?: unknown; data?: Record<string, unknown> } = {}) {
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
