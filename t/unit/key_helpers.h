/*
 * Helpers shared by the unit tests of src/quota_key.c and
 * src/quota_epoch.c (test_key_*.c, test_epoch.c):
 * the includes, U(), the canary byte, the fixed times around
 * 2026-11-23T14:05:00Z and the seeded xorshift64* generator.  Each test
 * binary compiles its own copy.
 */

#ifndef KEY_HELPERS_H
#define KEY_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quota_key.h"
#include "quota_epoch.h"
#include "quota_row.h"


#define U(s)  ((const unsigned char *) (s))

#define CANARY  0xA5

/* 2026-11-23T14:05:00Z and the day and week (a Monday) that hold it */
#define T_MINUTE  1795442700LL
#define T_HOUR    1795442400LL
#define T_DAY     1795392000LL
#define T_MONTH   1793491200LL


#define UNIT_RNG_SEED  0xb7e151628aed2a6bULL
#include "unit_helpers.h"


#endif /* KEY_HELPERS_H */
