"""Scripts that run inside a container or pod (the components copy their text there): the snapshot agent, the
restore check and the backup store they share. In their container they import each other as top-level
modules; in the repository, as this package's."""
