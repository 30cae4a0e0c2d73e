/*
 * compat.c
 *		The registry's compatibility modes (backward, forward, full, none)
 *		between two versions of an event schema.
 *
 * Each mode reduces to schema inclusion, which the validator proves
 * (jsonschema/validate_subset.c): backward asks old within new, forward new
 * within old, and full both.  An unproven inclusion is refused.
 */
#include "postgres.h"

#include "registry/registry.h"

/*
 * Whether a change from old to new is allowed under mode.  On refusal,
 * *why says what broke and where.
 */
bool
evc_schema_compatible(EvcCompiledSchema *old_schema, EvcCompiledSchema *new_schema,
					  EvcCompatibility mode, char **why)
{
	char	   *where;
	char	   *reason;

	if ((mode == EVC_COMPAT_BACKWARD || mode == EVC_COMPAT_FULL) &&
		!evc_schema_subset(old_schema, new_schema, &where, &reason))
	{
		*why = psprintf("An event valid under the previous version would be refused: at %s, %s",
						where, reason);
		return false;
	}
	if ((mode == EVC_COMPAT_FORWARD || mode == EVC_COMPAT_FULL) &&
		!evc_schema_subset(new_schema, old_schema, &where, &reason))
	{
		*why = psprintf("An event valid under the new version would be refused by the previous one: at %s, %s",
						where, reason);
		return false;
	}
	return true;
}
