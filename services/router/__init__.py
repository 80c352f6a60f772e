"""The router: picks the backend pool for (process, language), balances, fails over, mirrors."""
