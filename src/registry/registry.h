/*
 * registry.h
 *		The schema registry: event types by client and name, their versions,
 *		topics and compiled validators.  This is the face evc_send uses.
 */
#ifndef EVC_REGISTRY_H
#define EVC_REGISTRY_H

#include "utils/jsonb.h"

#include "jsonschema/validate.h"

/* Longest client or event name (the topic must also fit Kafka's 249). */
#define EVC_NAME_MAX 100

typedef enum EvcCompatibility
{
	EVC_COMPAT_NONE,
	EVC_COMPAT_BACKWARD,
	EVC_COMPAT_FORWARD,
	EVC_COMPAT_FULL
} EvcCompatibility;

/*
 * One registered version, as cached by this backend.  The pointer stays
 * valid until the next evc_registry_lookup* call (a registry change frees
 * the cache lazily, at that call), so use it at once and do not keep it.
 */
typedef struct EvcEventType
{
	int64		id;				/* evc.event_types.id: unique per version */
	const char *client;
	const char *event_name;
	int32		version;
	const char *topic;			/* <evcollector.topic_prefix><client>.<event_name> */
	Jsonb	   *schema;
	EvcCompiledSchema *validator;
} EvcEventType;

/*
 * The latest version of client.event_name.  When it does not exist: NULL if
 * missing_ok, else ERROR (SQLSTATE EVS05, unknown event type).  No SPI and
 * no parsing on a cache hit.
 */
extern EvcEventType *evc_registry_lookup(const char *client, const char *event_name,
										 bool missing_ok);

/* A given version (version <= 0: the latest). */
extern EvcEventType *evc_registry_lookup_version(const char *client, const char *event_name,
												 int32 version, bool missing_ok);

/*
 * Check an event against its event type; ERROR (SQLSTATE EVS02) naming the
 * instance path, keyword and schema path when it does not match.
 */
extern void evc_registry_check_event(EvcEventType *et, Jsonb *event);

/* Name rules: ERROR (SQLSTATE EVS06) unless name is a valid client / event name. */
extern void evc_check_name(const char *what, const char *name, bool dots_allowed);

/* Registration, in one function so that publishing it can be added there. */
extern int32 evc_registry_register(const char *client, const char *event_name,
								   Jsonb *schema, EvcCompatibility mode);

/* compat.c */
extern bool evc_schema_compatible(EvcCompiledSchema *old_schema, EvcCompiledSchema *new_schema,
								  EvcCompatibility mode, char **why);

/*
 * The registry's own SQLSTATEs, after the validator's EVS01-EVS03
 * (jsonschema/validate.h): class "EV" is evcollector's, subclass "S" the
 * schema registry.
 */
#define EVC_ERRCODE_INCOMPATIBLE_SCHEMA	MAKE_SQLSTATE('E','V','S','0','4')
#define EVC_ERRCODE_UNKNOWN_EVENT_TYPE	MAKE_SQLSTATE('E','V','S','0','5')
#define EVC_ERRCODE_INVALID_NAME		MAKE_SQLSTATE('E','V','S','0','6')

#endif
