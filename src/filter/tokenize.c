/* The statistical filter's tokenizer (bayes.h). Skeleton: no tokens. */
#include <stdlib.h>

#include "filter/bayes.h"

void bayes_tokenize(const char *msg, size_t len, struct bayes_tokens *out)
{
	out->v = NULL;
	out->n = 0;
}

void bayes_tokens_free(struct bayes_tokens *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].text);
	free(t->v);
	t->v = NULL;
	t->n = 0;
}
