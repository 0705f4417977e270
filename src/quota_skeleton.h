/*
 * The skeleton of a chat request body, for quota_request.c.
 *
 * Chat bodies are mostly prose, and jansson decodes and copies every
 * string byte by byte only for the parser to learn its length.  A body of
 * QUOTA_SKELETON_MIN bytes or more is parsed as its skeleton: each
 * string value of that many bytes or more is replaced by a placeholder,
 * "\u0000" and its number, and its lengths are kept aside.  JSON text
 * cannot hold a raw NUL, a body that holds the escape is parsed whole,
 * and model names are far shorter, so a placeholder is never mistaken.
 */

#ifndef QUOTA_SKELETON_H
#define QUOTA_SKELETON_H

#include <stddef.h>
#include <stdint.h>


#define QUOTA_SKELETON_MIN  256


/* the lengths of a string taken out of the skeleton */
typedef struct {
    uint64_t              text;         /* decoded, in UTF-8 bytes */
    uint64_t              json;         /* as jansson writes it, quoted */
} quota_string_t;


/*
 * the skeleton of body (malloc'd, *out bytes long), and the strings taken
 * out of it (*strings, malloc'd, to be freed); NULL when the body must be
 * parsed whole
 */
unsigned char *quota_skeleton(const unsigned char *body, size_t len,
    size_t *out, quota_string_t **strings, size_t *nstrings);

/* an escaped NUL: such a body is parsed whole, placeholders would clash */
int quota_skeleton_has_nul(const unsigned char *body, size_t len);

#endif /* QUOTA_SKELETON_H */
