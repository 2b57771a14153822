import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Compares a presented secret with the expected one in the same time whatever they hold.
 * Both are hashed first: timingSafeEqual throws on inputs of different lengths, and an early
 * length check would tell an attacker the token's length.
 */
export function sameSecret(presented: string, expected: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(presented), digest(expected));
}
