"""The paper's diagnostic tables, one module each: what a table needs searched and
retrained, and how it renders (`spec(setup)`); `common` holds what they share and `render`
writes them out. The experiment behind each table (the paper's context, the commands, its
sweeps and presets) is registered in `pdarts_ray/experiments/`."""
