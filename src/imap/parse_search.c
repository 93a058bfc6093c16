/* SEARCH arguments (RFC 9051 6.4.4 and 9: search-key; RFC 3501 6.4.4;
 * RFC 4731 ESEARCH RETURN options; RFC 5182 SEARCHRES "$" and SAVE;
 * RFC 7162 3.1.5 MODSEQ; RFC 5032 OLDER/YOUNGER). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "imap/parse.h"
#include "imap/parse_int.h"

struct sctx {
	size_t keys, max_keys;
	const char *err;
};

static const struct {
	const char *name;
	enum imap_search_kind kind;
	unsigned flag;
} flag_keys[] = {
    {"ANSWERED", IMAP_SK_FLAG, IMAP_F_ANSWERED},
    {"DELETED", IMAP_SK_FLAG, IMAP_F_DELETED},
    {"DRAFT", IMAP_SK_FLAG, IMAP_F_DRAFT},
    {"FLAGGED", IMAP_SK_FLAG, IMAP_F_FLAGGED},
    {"SEEN", IMAP_SK_FLAG, IMAP_F_SEEN},
    {"RECENT", IMAP_SK_FLAG, IMAP_F_RECENT},
    {"UNANSWERED", IMAP_SK_UNFLAG, IMAP_F_ANSWERED},
    {"UNDELETED", IMAP_SK_UNFLAG, IMAP_F_DELETED},
    {"UNDRAFT", IMAP_SK_UNFLAG, IMAP_F_DRAFT},
    {"UNFLAGGED", IMAP_SK_UNFLAG, IMAP_F_FLAGGED},
    {"UNSEEN", IMAP_SK_UNFLAG, IMAP_F_SEEN},
    {"ALL", IMAP_SK_ALL, 0},
    {"NEW", IMAP_SK_NEW, 0},
    {"OLD", IMAP_SK_OLD, 0},
    {"SAVEDATESUPPORTED", IMAP_SK_SAVEDATESUPPORTED, 0}, /* RFC 8514 5 */
};

static const struct {
	const char *name;
	enum imap_search_kind kind;
} date_keys[] = {
    {"BEFORE", IMAP_SK_BEFORE}, {"ON", IMAP_SK_ON},
    {"SINCE", IMAP_SK_SINCE},   {"SENTBEFORE", IMAP_SK_SENTBEFORE},
    {"SENTON", IMAP_SK_SENTON}, {"SENTSINCE", IMAP_SK_SENTSINCE},
    /* RFC 8514 5 */
    {"SAVEDBEFORE", IMAP_SK_SAVEDBEFORE}, {"SAVEDON", IMAP_SK_SAVEDON},
    {"SAVEDSINCE", IMAP_SK_SAVEDSINCE},
};

/* header shortcuts: the key's name is the field's */
static const char *const addr_keys[] = {"FROM", "TO", "CC", "BCC", "SUBJECT"};

/* A search string: astring, valid UTF-8 (US-ASCII and UTF-8 are the only
 * charsets accepted, and both are UTF-8). */
static char *search_string(struct sctx *c, const struct imap_arg *a)
{
	const char *s;
	size_t n;
	if (!imap_arg_astring(a, &s, &n)) {
		c->err = "Invalid search string";
		return NULL;
	}
	if (!imap_utf8_valid(s, n)) {
		c->err = "Invalid UTF-8 in search string";
		return NULL;
	}
	return xstrndup(s, n);
}

static int parse_key(struct sctx *c, const struct imap_arg **ap, struct imap_search_key *k,
                     unsigned depth);

/* Keys up to EOL as the children of an AND node. */
static int parse_and(struct sctx *c, const struct imap_arg *a, struct imap_search_key *k,
                     unsigned depth)
{
	size_t cap = 0;
	k->kind = IMAP_SK_AND;
	if (a->type == IMAP_ARG_EOL) {
		c->err = "Missing search keys";
		return -1;
	}
	while (a->type != IMAP_ARG_EOL) {
		if (k->n_sub == cap) {
			cap = cap ? cap * 2 : 4;
			k->sub = xrealloc(k->sub, cap * sizeof *k->sub);
		}
		struct imap_search_key *sub = &k->sub[k->n_sub];
		memset(sub, 0, sizeof *sub);
		k->n_sub++;
		if (parse_key(c, &a, sub, depth) < 0)
			return -1;
	}
	return 0;
}

static int parse_key(struct sctx *c, const struct imap_arg **ap, struct imap_search_key *k,
                     unsigned depth)
{
	const struct imap_arg *a = *ap;
	if (++c->keys > c->max_keys) {
		c->err = "Too many search keys";
		return -1;
	}
	if (depth > IMAP_SEARCH_MAX_DEPTH) {
		c->err = "Too deep nesting of search keys";
		return -1;
	}
	if (a->type == IMAP_ARG_LIST) {
		*ap = a + 1;
		return parse_and(c, a->list, k, depth + 1);
	}
	if (a->type != IMAP_ARG_ATOM) {
		c->err = a->type == IMAP_ARG_EOL ? "Missing search key" : "Invalid search key";
		return -1;
	}
	a++;
	const struct imap_arg *key = a - 1;
	char c0 = key->str[0];

	/* sequence-set (RFC 9051 9: search-key =/ sequence-set) */
	if ((c0 >= '0' && c0 <= '9') || c0 == '*' || c0 == '$') {
		k->kind = IMAP_SK_SEQSET;
		if (imap_seqset_parse(key->str, key->len, 0, &k->set) < 0) {
			c->err = "Invalid sequence set";
			return -1;
		}
		*ap = a;
		return 0;
	}
	for (size_t i = 0; i < sizeof flag_keys / sizeof flag_keys[0]; i++)
		if (imap_arg_atom_is(key, flag_keys[i].name)) {
			k->kind = flag_keys[i].kind;
			k->flags = flag_keys[i].flag;
			*ap = a;
			return 0;
		}
	for (size_t i = 0; i < sizeof date_keys / sizeof date_keys[0]; i++)
		if (imap_arg_atom_is(key, date_keys[i].name)) {
			const char *s;
			size_t n;
			k->kind = date_keys[i].kind;
			if (!imap_arg_astring(a, &s, &n) || !imap_parse_date(s, n, &k->day)) {
				c->err = "Invalid search date";
				return -1;
			}
			*ap = a + 1;
			return 0;
		}
	for (size_t i = 0; i < sizeof addr_keys / sizeof addr_keys[0]; i++)
		if (imap_arg_atom_is(key, addr_keys[i])) {
			k->kind = IMAP_SK_HEADER;
			k->str2 = xstrdup(addr_keys[i]);
			if (i < 4)
				k->flags = IMAP_SK_F_ADDRESS;
			if ((k->str = search_string(c, a)) == NULL)
				return -1;
			*ap = a + 1;
			return 0;
		}
	if (imap_arg_atom_is(key, "BODY") || imap_arg_atom_is(key, "TEXT")) {
		k->kind = imap_arg_atom_is(key, "BODY") ? IMAP_SK_BODY : IMAP_SK_TEXT;
		if ((k->str = search_string(c, a)) == NULL)
			return -1;
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "HEADER")) {
		/* HEADER header-fld-name astring */
		k->kind = IMAP_SK_HEADER;
		if ((k->str2 = search_string(c, a)) == NULL)
			return -1;
		for (const char *p = k->str2; *p != '\0'; p++)
			if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == ':') {
				c->err = "Invalid header field name";
				return -1;
			}
		if (k->str2[0] == '\0') {
			c->err = "Invalid header field name";
			return -1;
		}
		if ((k->str = search_string(c, a + 1)) == NULL)
			return -1;
		*ap = a + 2;
		return 0;
	}
	if (imap_arg_atom_is(key, "KEYWORD") || imap_arg_atom_is(key, "UNKEYWORD")) {
		/* flag-keyword = atom */
		k->kind = imap_arg_atom_is(key, "KEYWORD") ? IMAP_SK_KEYWORD : IMAP_SK_UNKEYWORD;
		if (a->type != IMAP_ARG_ATOM && a->type != IMAP_ARG_NIL) {
			c->err = "Invalid keyword";
			return -1;
		}
		for (size_t i = 0; i < a->len; i++)
			if (!imap_is_atom_char((unsigned char)a->str[i])) {
				c->err = "Invalid keyword";
				return -1;
			}
		k->str = xstrndup(a->str, a->len);
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "LARGER") || imap_arg_atom_is(key, "SMALLER")) {
		k->kind = imap_arg_atom_is(key, "LARGER") ? IMAP_SK_LARGER : IMAP_SK_SMALLER;
		/* number64 in RFC 9051 */
		if (a->type != IMAP_ARG_ATOM ||
		    !imap_parse_u64(a->str, a->len, INT64_MAX, &k->num)) {
			c->err = "Invalid size";
			return -1;
		}
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "OLDER") || imap_arg_atom_is(key, "YOUNGER")) {
		/* RFC 5032: nz-number seconds */
		k->kind = imap_arg_atom_is(key, "OLDER") ? IMAP_SK_OLDER : IMAP_SK_YOUNGER;
		uint32_t n;
		if (!imap_arg_number(a, &n) || n == 0) {
			c->err = "Invalid interval";
			return -1;
		}
		k->num = n;
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "EMAILID") || imap_arg_atom_is(key, "THREADID")) {
		/* RFC 8474 6: "EMAILID" SP objectid, objectid =
		 * 1*255(ALPHA / DIGIT / "_" / "-") */
		k->kind = imap_arg_atom_is(key, "EMAILID") ? IMAP_SK_EMAILID : IMAP_SK_THREADID;
		if (a->type != IMAP_ARG_ATOM || a->len < 1 || a->len > 255) {
			c->err = "Invalid object id";
			return -1;
		}
		for (size_t i = 0; i < a->len; i++) {
			char ch = a->str[i];
			if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')) {
				c->err = "Invalid object id";
				return -1;
			}
		}
		k->str = xstrndup(a->str, a->len);
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "UID")) {
		k->kind = IMAP_SK_UIDSET;
		if (a->type != IMAP_ARG_ATOM || imap_seqset_parse(a->str, a->len, 0, &k->set) < 0) {
			c->err = "Invalid UID set";
			return -1;
		}
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "MODSEQ")) {
		/* "MODSEQ" [SP entry-name SP entry-type-req] SP
		 * mod-sequence-valzer (RFC 7162 7); the entry is accepted
		 * and ignored: flags have no per-flag modseq here. */
		k->kind = IMAP_SK_MODSEQ;
		if (a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL) {
			if (a->len < 8 || strncasecmp(a->str, "/flags/", 7) != 0 ||
			    !(imap_arg_atom_is(a + 1, "PRIV") ||
			      imap_arg_atom_is(a + 1, "SHARED") ||
			      imap_arg_atom_is(a + 1, "ALL"))) {
				c->err = "Invalid MODSEQ entry";
				return -1;
			}
			a += 2;
		}
		if (!imap_arg_number64(a, &k->num)) {
			c->err = "Invalid MODSEQ value";
			return -1;
		}
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "NOT")) {
		k->kind = IMAP_SK_NOT;
		k->sub = xcalloc(1, sizeof *k->sub);
		k->n_sub = 1;
		*ap = a;
		return parse_key(c, ap, &k->sub[0], depth + 1);
	}
	if (imap_arg_atom_is(key, "OR")) {
		k->kind = IMAP_SK_OR;
		k->sub = xcalloc(2, sizeof *k->sub);
		k->n_sub = 2;
		*ap = a;
		if (parse_key(c, ap, &k->sub[0], depth + 1) < 0)
			return -1;
		return parse_key(c, ap, &k->sub[1], depth + 1);
	}
	c->err = "Unknown search key";
	return -1;
}

/* partial-range (RFC 9394 3.1): nz-number ":" nz-number, or both negative
 * ("-1:-100": from the end); m:n and n:m are the same range. */
static bool partial_range(const struct imap_arg *a, int64_t *lo_r, int64_t *hi_r)
{
	const char *p, *colon;
	uint64_t x, y;
	bool neg;

	if (a->type != IMAP_ARG_ATOM || (colon = memchr(a->str, ':', a->len)) == NULL)
		return false;
	p = a->str;
	neg = p[0] == '-';
	if (neg != (colon[1] == '-'))
		return false;
	if (!imap_parse_u64(p + neg, (size_t)(colon - p) - neg, UINT32_MAX, &x) ||
	    !imap_parse_u64(colon + 1 + neg, a->len - (size_t)(colon + 1 - p) - neg, UINT32_MAX,
			    &y) ||
	    x == 0 || y == 0)
		return false;
	if (x > y) {
		uint64_t t = x;
		x = y;
		y = t;
	}
	*lo_r = neg ? -(int64_t)y : (int64_t)x;
	*hi_r = neg ? -(int64_t)x : (int64_t)y;
	return true;
}

/* search-return-opts (RFC 4731 3, RFC 5182 2.1, RFC 5267 4 UPDATE and
 * CONTEXT, RFC 9394 PARTIAL) */
static int return_opts(struct imap_search *s, const struct imap_arg *list, const char **err_r)
{
	s->esearch = true;
	for (const struct imap_arg *o = list; o->type != IMAP_ARG_EOL; o++) {
		if (imap_arg_atom_is(o, "PARTIAL")) {
			if (s->ret_partial || !partial_range(o + 1, &s->partial_lo, &s->partial_hi)) {
				*err_r = "Invalid PARTIAL range";
				return -1;
			}
			s->ret_partial = true;
			o++;
			continue;
		}
		bool *flag = imap_arg_atom_is(o, "MIN")       ? &s->ret_min
		             : imap_arg_atom_is(o, "MAX")     ? &s->ret_max
		             : imap_arg_atom_is(o, "ALL")     ? &s->ret_all
		             : imap_arg_atom_is(o, "COUNT")   ? &s->ret_count
		             : imap_arg_atom_is(o, "SAVE")    ? &s->ret_save
		             : imap_arg_atom_is(o, "UPDATE")  ? &s->ret_update
		             : imap_arg_atom_is(o, "CONTEXT") ? &s->ret_context
		                                              : NULL;
		if (flag == NULL) {
			*err_r = "Unknown search return option";
			return -1;
		}
		*flag = true;
	}
	/* "RETURN ()" is RETURN (ALL) (RFC 4731 3.1) */
	if (list->type == IMAP_ARG_EOL)
		s->ret_all = true;
	/* RFC 9394 3.1: PARTIAL and ALL are mutually exclusive */
	if (s->ret_partial && s->ret_all) {
		*err_r = "PARTIAL and ALL cannot be combined";
		return -1;
	}
	return 0;
}

/* charset: US-ASCII and UTF-8 only (RFC 9051 6.4.4, RFC 5256 3) */
static int check_charset(const struct imap_arg *a, struct imap_search *s, bool *bad_charset_r,
			 const char **err_r)
{
	const char *cs;
	size_t n;
	if (!imap_arg_astring(a, &cs, &n)) {
		*err_r = "Invalid charset";
		return -1;
	}
	s->charset = cs;
	if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
		/* NO [BADCHARSET (US-ASCII UTF-8)] (RFC 9051 6.4.4) */
		*bad_charset_r = true;
		*err_r = "Unsupported charset";
		return -1;
	}
	return 0;
}

static int parse_common(const struct imap_arg *a, size_t max_keys, bool sort,
			struct imap_search *s, bool *bad_charset_r, const char **err_r)
{
	struct sctx c = {0, max_keys, NULL};

	if (imap_arg_atom_is(a, "RETURN")) {
		if (a[1].type != IMAP_ARG_LIST) {
			*err_r = "Invalid search return options";
			return -1;
		}
		if (return_opts(s, a[1].list, err_r) < 0)
			return -1;
		a += 2;
	}
	if (sort) {
		/* sort-criteria = "(" sort-criterion *(SP sort-criterion) ")" */
		static const char *const names[] = {
		    [IMAP_SORT_ARRIVAL] = "ARRIVAL", [IMAP_SORT_CC] = "CC",
		    [IMAP_SORT_DATE] = "DATE",       [IMAP_SORT_FROM] = "FROM",
		    [IMAP_SORT_SIZE] = "SIZE",       [IMAP_SORT_SUBJECT] = "SUBJECT",
		    [IMAP_SORT_TO] = "TO",           [IMAP_SORT_DISPLAYFROM] = "DISPLAYFROM",
		    [IMAP_SORT_DISPLAYTO] = "DISPLAYTO",
		};
		if (a->type != IMAP_ARG_LIST || a->list->type == IMAP_ARG_EOL) {
			*err_r = "Invalid sort criteria";
			return -1;
		}
		for (const struct imap_arg *o = a->list; o->type != IMAP_ARG_EOL; o++) {
			bool rev = imap_arg_atom_is(o, "REVERSE");
			size_t k;
			if (rev)
				o++;
			for (k = 0; k < sizeof names / sizeof names[0]; k++)
				if (imap_arg_atom_is(o, names[k]))
					break;
			if (k == sizeof names / sizeof names[0] || s->n_sort == IMAP_SORT_MAX_CRIT) {
				*err_r = "Invalid sort criteria";
				return -1;
			}
			s->sort[s->n_sort].kind = (uint8_t)k;
			s->sort[s->n_sort].reverse = rev;
			s->n_sort++;
		}
		if (check_charset(a + 1, s, bad_charset_r, err_r) < 0)
			return -1;
		a += 2;
	} else if (imap_arg_atom_is(a, "CHARSET")) {
		if (check_charset(a + 1, s, bad_charset_r, err_r) < 0)
			return -1;
		a += 2;
	}
	if (parse_and(&c, a, &s->root, 0) < 0) {
		imap_search_free(s);
		*err_r = c.err;
		return -1;
	}
	*err_r = NULL;
	return 0;
}

int imap_search_parse(const struct imap_arg *args, size_t max_keys, struct imap_search *s,
                      bool *bad_charset_r, const char **err_r)
{
	memset(s, 0, sizeof *s);
	*bad_charset_r = false;
	return parse_common(args, max_keys, false, s, bad_charset_r, err_r);
}

int imap_sort_parse(const struct imap_arg *args, size_t max_keys, struct imap_search *s,
		    bool *bad_charset_r, const char **err_r)
{
	memset(s, 0, sizeof *s);
	*bad_charset_r = false;
	return parse_common(args, max_keys, true, s, bad_charset_r, err_r);
}

static void key_free(struct imap_search_key *k)
{
	for (size_t i = 0; i < k->n_sub; i++)
		key_free(&k->sub[i]);
	x_free(&k->sub);
	k->n_sub = 0;
	imap_seqset_free(&k->set);
	x_free(&k->str);
	x_free(&k->str2);
	x_free(&k->fold);
}

void imap_search_free(struct imap_search *s)
{
	key_free(&s->root);
}
