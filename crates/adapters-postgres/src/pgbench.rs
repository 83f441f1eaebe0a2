//! Keeps `bench/pgbench/*.sql` equal to the statements the adapter sends (see below).
