"""Vendors' notifications (Oura webhooks, Withings Notify): hints that trigger a sync,
verified where the vendor signs them, backed by the scheduled syncs; subscriptions kept
and renewed before they expire."""
