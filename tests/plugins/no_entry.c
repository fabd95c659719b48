/* A shared object that forgot to export the epcs entry symbol. */
int epcs_plugin_entry_misspelt(void);

int epcs_plugin_entry_misspelt(void)
{
    return 0;
}
