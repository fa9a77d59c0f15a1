"""One module per stage family; each registers its stages in harness.driver.STAGES."""
