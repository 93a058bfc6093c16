/* Shared by the src/imap/parse*.c files only: character classes of the IMAP
 * grammar (RFC 9051 9), UTF-8 validation, and the arena that holds an
 * argument tree (freed at once by imap_args_free). */
#ifndef POSTERN_IMAP_PARSE_INT_H
#define POSTERN_IMAP_PARSE_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool imap_is_atom_char(unsigned char c);
bool imap_is_astring_char(unsigned char c);
bool imap_is_tag_char(unsigned char c);
/* Length of the valid UTF-8 sequence at s, or 0 (RFC 3629 4). */
size_t imap_utf8_len(const unsigned char *s, size_t n);
bool imap_utf8_valid(const char *s, size_t n);
/* Decimal digits only, value <= max. */
bool imap_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *n_r);

void *imap_arena_alloc(void **mem, size_t n);
char *imap_arena_strndup(void **mem, const char *s, size_t n);
void imap_arena_free(void **mem);

#endif
