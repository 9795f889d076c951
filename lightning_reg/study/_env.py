"""The environment variable through which a sweep hands a job its trial (a module of its own, so that the light
package ``lightning_reg.study`` and the job's link both import it without importing each other)."""

TRIAL_ENV = "LIGHTNING_REG_TRIAL"
