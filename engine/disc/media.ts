/**
 * Named media (`backup --volume-size MEDIA`, `disc --media MEDIA`): their capacity, and the
 * share of it a volume gets. Kept apart from the disc planner and the volume writer, so
 * that a command's help and flags can name them without loading either.
 */

/** Named media sizes of `--volume-size`, in bytes. */
export const MEDIA: Record<string, number> = {
  cd: 700_000_000, dvd: 4_700_000_000, bluray: 25_000_000_000, 'bd-dl': 50_000_000_000, 'bd-xl': 100_000_000_000, 'bd-xx': 128_000_000_000,
};

/**
 * The share of a named medium that `backup --volume-size MEDIA` gives each volume: the
 * rest holds its PAR2 parity (up to 10%) and the set's records, manifests and indexes.
 */
export const VOLUME_SHARE = 0.88;

/** The volume size `backup --volume-size MEDIA` uses for a named medium: a volume and its parity fit one disc. */
export function mediaVolumeSizes(): Record<string, number> {
  return Object.fromEntries(Object.entries(MEDIA).map(([k, v]) => [k, Math.floor(v * VOLUME_SHARE)]));
}
