/**
 * What an `s3://BUCKET[/PREFIX]` repository argument names, read without the AWS SDK
 * (s3.ts), so that naming a repository costs nothing to load.
 */
import { UsageError } from '../../formats/errors.js';
import { checkObjectName } from './storage.js';

/** A bucket and the prefix the repository lives under ('' for the whole bucket). */
export interface S3Location { bucket: string; prefix: string }

/**
 * Parses `s3://BUCKET[/PREFIX]`. Credentials never go in the URL (they come from the AWS
 * environment), so a URL that carries any is refused without being repeated.
 */
export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([^/?#]*)(\/[^?#]*)?$/i.exec(url);
  if (!m) throw new UsageError('bad-repo', 's3 repository: expected s3://BUCKET or s3://BUCKET/PREFIX (no query or fragment)');
  const [, bucket, path = ''] = m;
  if (bucket.includes('@') || bucket.includes(':')) {
    throw new UsageError('bad-repo', 's3 repository: the URL must not carry credentials or a port (credentials come from AWS_* variables or ~/.aws, the endpoint from AWS_ENDPOINT_URL_S3)');
  }
  if (!/^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new UsageError('bad-repo', `s3://${bucket}: not a bucket name (3 to 63 lowercase letters, digits, '.', '_' and '-')`);
  }
  const prefix = path.replace(/^\/+/, '').replace(/\/+$/, '');
  if (prefix) {
    try { checkObjectName(prefix); } catch { throw new UsageError('bad-repo', `s3://${bucket}/${prefix}: a prefix of '/'-separated components, none empty, '.' or '..'`); }
  }
  return { bucket, prefix };
}

/** How messages name an S3 repository: `s3://BUCKET[/PREFIX]`. */
export function s3Where(location: S3Location): string {
  return `s3://${location.bucket}${location.prefix ? `/${location.prefix}` : ''}`;
}
