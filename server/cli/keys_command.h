#ifndef EPCS_KEYS_COMMAND_H
#define EPCS_KEYS_COMMAND_H

/** `epcsd keys create|revoke|list ...` (argv without "epcsd keys"): the process exit status. */
int epcs_keys_command(int argc, char **argv);

#endif
