/*
 * What every unit test may share: the seeded xorshift64* generator of
 * the randomised tests.  A file (or its theme's helpers header) defines
 * UNIT_RNG_SEED before including this, so each binary draws its own
 * fixed sequence and every run is the same.
 */

#ifndef UNIT_HELPERS_H
#define UNIT_HELPERS_H

#include <stdint.h>


#ifndef UNIT_RNG_SEED
#define UNIT_RNG_SEED  0x9e3779b97f4a7c15ULL
#endif


static uint64_t  rng_state = UNIT_RNG_SEED;

static inline uint64_t
rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;

    return rng_state * 0x2545f4914f6cdd1dULL;
}


#endif /* UNIT_HELPERS_H */
