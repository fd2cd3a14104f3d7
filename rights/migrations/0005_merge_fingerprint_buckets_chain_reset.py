from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('rights', '0004_chain_reset_and_fee_bumps'),
        ('rights', '0004_fingerprint_buckets'),
    ]

    operations = []
