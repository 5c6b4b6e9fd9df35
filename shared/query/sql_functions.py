"""What raw report SQL may call and read, per dialect: the lists behind `sqlguard`.

Raw SQL is checked against an allow-list, not a deny-list: a function that is not
named here is refused, so a server extension, a user-defined function or a built-in
we never thought of (`query_to_xml`, `dblink`, `load_file`…) cannot run. Every name
here is a built-in without side effects or server access: aggregates, window
functions, math, string, date/time, JSON/array access, casts and conditionals. Names
are lower case, as the database reads an unquoted name. A few words that are type
names (`numeric(10, 2)`) or grouping syntax read like calls and are listed too.

The relation lists go the other way: catalog tables and views that expose
credentials (password hashes, user mappings) or server state (other sessions'
queries, configuration files, replication) are refused by name even though a
SELECT on them would be read-only.
"""

from __future__ import annotations


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- shared by all three dialects ---------------------------------------------------

_WINDOW = _names("row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value")
_CORE = _names(
    """
    count sum avg min max coalesce nullif greatest least cast
    abs ceil ceiling floor round sign sqrt exp ln log log10 mod power pow pi
    sin cos tan asin acos atan atan2 cot degrees radians
    lower upper trim ltrim rtrim replace substr substring length concat concat_ws
    left right lpad rpad reverse repeat ascii char_length character_length octet_length
    position md5
    date time timestamp extract
    decimal numeric char varchar
    """
)

# --- PostgreSQL ----------------------------------------------------------------------

_PG = _names(
    """
    stddev stddev_pop stddev_samp variance var_pop var_samp percentile_cont percentile_disc mode
    string_agg array_agg json_agg jsonb_agg json_agg_strict jsonb_agg_strict json_object_agg
    jsonb_object_agg json_object_agg_strict jsonb_object_agg_strict json_object_agg_unique
    jsonb_object_agg_unique json_object_agg_unique_strict jsonb_object_agg_unique_strict json_arrayagg
    json_objectagg bool_and bool_or every bit_and bit_or bit_xor corr covar_pop covar_samp regr_avgx
    regr_avgy regr_count regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy xmlagg
    range_agg range_intersect_agg any_value grouping
    cbrt div factorial gcd lcm min_scale scale trim_scale trunc width_bucket random random_normal
    acosd asind atand atan2d cosd cotd sind tand sinh cosh tanh asinh acosh atanh erf erfc
    bit_length btrim chr format initcap normalize overlay quote_ident quote_literal quote_nullable
    regexp_count regexp_instr regexp_like regexp_match regexp_matches regexp_replace
    regexp_split_to_array regexp_split_to_table regexp_substr split_part starts_with string_to_array
    string_to_table strpos to_ascii to_hex translate unistr casefold encode decode
    sha224 sha256 sha384 sha512 convert_from convert_to get_byte get_bit crc32 crc32c
    to_char to_number to_date to_timestamp
    age clock_timestamp current_time current_timestamp localtime localtimestamp date_add date_subtract
    date_bin date_part date_trunc isfinite justify_days justify_hours justify_interval make_date
    make_interval make_time make_timestamp make_timestamptz now statement_timestamp timeofday
    transaction_timestamp timezone overlaps pg_sleep pg_sleep_for pg_sleep_until
    generate_series generate_subscripts
    num_nulls num_nonnulls
    json_extract_path json_extract_path_text jsonb_extract_path jsonb_extract_path_text
    json_array_length jsonb_array_length json_array_elements json_array_elements_text
    jsonb_array_elements jsonb_array_elements_text json_each json_each_text jsonb_each jsonb_each_text
    json_object_keys jsonb_object_keys json_typeof jsonb_typeof json_strip_nulls jsonb_strip_nulls
    jsonb_pretty jsonb_set jsonb_set_lax jsonb_insert jsonb_path_exists jsonb_path_match
    jsonb_path_query jsonb_path_query_array jsonb_path_query_first jsonb_path_exists_tz
    jsonb_path_match_tz jsonb_path_query_tz jsonb_path_query_array_tz jsonb_path_query_first_tz
    json_build_array json_build_object jsonb_build_array jsonb_build_object json_object jsonb_object
    to_json to_jsonb array_to_json row_to_json json_populate_record json_populate_recordset
    jsonb_populate_record jsonb_populate_recordset json_to_record json_to_recordset jsonb_to_record
    jsonb_to_recordset json_array json_scalar json_serialize json_query json_value json_exists json
    array_append array_cat array_dims array_fill array_length array_lower array_ndims array_position
    array_positions array_prepend array_remove array_replace array_to_string array_upper cardinality
    unnest array_reverse array_sample array_shuffle array_sort trim_array
    isempty lower_inc upper_inc lower_inf upper_inf range_merge int4range int8range numrange tsrange
    tstzrange daterange multirange
    xpath xpath_exists xmlelement xmlattributes xmlforest xmlconcat xmlparse xmlserialize xmlcomment
    xmltext xml_is_well_formed xml_is_well_formed_document xml_is_well_formed_content
    to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank ts_rank_cd
    ts_headline setweight strip numnode querytree tsvector_to_array array_to_tsvector
    host masklen network family abbrev broadcast netmask hostmask
    current_setting current_database current_schema current_schemas current_catalog current_user
    session_user current_role pg_typeof pg_size_pretty gen_random_uuid uuidv4 uuidv7
    dec character varying bpchar timestamptz timetz text bit varbit bool boolean
    int int2 int4 int8 integer smallint bigint real float float4 float8
    """
)

# --- MySQL and MariaDB ---------------------------------------------------------------

_MYSQL = _names(
    """
    std stddev stddev_pop stddev_samp variance var_pop var_samp group_concat bit_and bit_or bit_xor
    json_arrayagg json_objectagg percentile_cont percentile_disc median any_value
    conv crc32 log2 oct truncate rand format bin hex unhex
    bit_length elt export_set field find_in_set from_base64 to_base64 insert instr lcase locate
    make_set mid ord quote regexp_instr regexp_like regexp_replace regexp_substr soundex space strcmp
    substring_index ucase sha sha1 sha2 natural_sort_key sformat charset collation coercibility
    adddate addtime convert_tz curdate current_date current_time current_timestamp curtime date_add
    date_format date_sub datediff day dayname dayofmonth dayofweek dayofyear from_days from_unixtime
    get_format hour last_day localtime localtimestamp makedate maketime microsecond minute month
    monthname now period_add period_diff quarter sec_to_time second str_to_date subdate subtime
    sysdate time_format time_to_sec timediff timestampadd timestampdiff to_days to_seconds
    unix_timestamp utc_date utc_time utc_timestamp week weekday weekofyear year yearweek add_months
    sleep
    if ifnull isnull nvl nvl2 convert binary nchar datetime float double int integer dec
    json_array json_array_append json_array_insert json_contains json_contains_path json_depth
    json_extract json_insert json_keys json_length json_merge json_merge_patch json_merge_preserve
    json_object json_overlaps json_pretty json_quote json_remove json_replace json_search json_set
    json_type json_unquote json_valid json_value json_exists json_query json_detailed json_compact
    json_loose json_normalize json_equals
    match uuid database schema user current_user current_role inet_aton inet_ntoa inet6_aton
    inet6_ntoa is_ipv4 is_ipv6 bin_to_uuid uuid_to_bin
    """
)

# --- SQLite --------------------------------------------------------------------------

_SQLITE = _names(
    """
    group_concat string_agg total median
    acosh asinh atanh ceiling cosh sinh tanh log2 trunc random randomblob
    char format glob hex ifnull iif if instr like likelihood likely unlikely printf quote soundex
    typeof unhex unicode zeroblob
    datetime julianday unixepoch strftime timediff
    json jsonb json_array jsonb_array json_array_length json_error_position json_extract jsonb_extract
    json_insert jsonb_insert json_object jsonb_object json_patch jsonb_patch json_pretty json_remove
    jsonb_remove json_replace jsonb_replace json_set jsonb_set json_type json_valid json_quote
    json_group_array jsonb_group_array json_group_object jsonb_group_object json_each json_tree
    generate_series integer int real text blob float double
    """
)

ALLOWED_FUNCTIONS: dict[str, frozenset[str]] = {
    "postgresql": _CORE | _WINDOW | _PG,
    "mysql": _CORE | _WINDOW | _MYSQL,
    "sqlite": _CORE | _WINDOW | _SQLITE,
}

# Schema qualification of an allowed function: only PostgreSQL's own catalog.
ALLOWED_FUNCTION_SCHEMAS: dict[str, frozenset[str]] = {
    "postgresql": frozenset({"pg_catalog"}),
    "mysql": frozenset(),
    "sqlite": frozenset(),
}

# --- relations -----------------------------------------------------------------------

# PostgreSQL: refused by name wherever they appear (with any schema), plus every
# `pg_stat_*` / `pg_statio_*` view (other sessions, their queries, server counters).
PG_REFUSED_RELATIONS = _names(
    """
    pg_authid pg_shadow pg_user pg_roles pg_group pg_auth_members pg_user_mapping pg_user_mappings
    user_mappings user_mapping_options _pg_user_mappings pg_db_role_setting pg_file_settings pg_hba_file_rules
    pg_ident_file_mappings pg_settings pg_config pg_largeobject pg_largeobject_metadata
    pg_subscription pg_replication_slots pg_replication_origin pg_replication_origin_status
    pg_locks pg_prepared_xacts pg_backend_memory_contexts pg_shmem_allocations pg_shmem_allocations_numa
    pg_aios pg_foreign_server pg_foreign_data_wrapper pg_policy pg_policies pg_seclabel pg_seclabels
    pg_shseclabel pg_statistic pg_statistic_ext pg_statistic_ext_data pg_stats pg_stats_ext pg_stats_ext_exprs
    """
)
PG_REFUSED_PREFIXES = ("pg_stat_", "pg_statio_")

# MySQL/MariaDB: whole schemas, and the information_schema views about accounts,
# privileges, sessions, status, variables and storage-engine internals.
MYSQL_REFUSED_SCHEMAS = _names("mysql performance_schema sys")
MYSQL_REFUSED_INFORMATION_SCHEMA = _names(
    """
    user_privileges schema_privileges table_privileges column_privileges applicable_roles
    enabled_roles administrable_role_authorizations role_table_grants role_column_grants
    role_routine_grants user_attributes user_statistics client_statistics index_statistics
    table_statistics processlist global_status global_variables session_status session_variables
    system_variables plugins all_plugins optimizer_trace profiling files disks key_caches
    user_variables query_cache_info query_response_time thread_pool_groups thread_pool_queues
    thread_pool_stats thread_pool_waits tablespaces_extensions resource_groups routines triggers
    events
    """
)
MYSQL_REFUSED_INFORMATION_SCHEMA_PREFIXES = ("innodb_", "wsrep_", "thread_pool_", "rocksdb_", "tokudb_")

# SQLite: raw database pages, prepared statements, file access and every pragma table.
SQLITE_REFUSED_RELATIONS = _names("sqlite_dbpage sqlite_stmt fsdir zipfile sqlar dbstat")
SQLITE_REFUSED_PREFIXES = ("pragma_",)
