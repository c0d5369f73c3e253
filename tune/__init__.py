"""Ray Tune sweeps over musicgan configs (outside the package: musicgan never imports ray)."""
