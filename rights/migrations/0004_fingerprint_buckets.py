"""The fingerprint search moves from four band columns (one index entry per hash and band) to buckets of
packed hashes (FingerprintBucket), filled here from the fingerprints already stored."""
from django.db import migrations, models


def buckets_fill(apps, schema_editor):
    from config.tenancy import dangerously_unscoped
    from rights.fingerprints import buckets_pack, stored_hashes

    Fingerprint = apps.get_model("rights", "Fingerprint")
    FingerprintBucket = apps.get_model("rights", "FingerprintBucket")
    alias = schema_editor.connection.alias
    with dangerously_unscoped():  # row level security: every organization's fingerprints
        values = stored_hashes(Fingerprint.objects.using(alias).all())
        FingerprintBucket.objects.using(alias).bulk_create(
            [FingerprintBucket(key=key, hashes=packed) for key, packed in buckets_pack(values)], batch_size=1000)


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
        ('rights', '0003_fingerprint_covering_band_indexes'),
    ]

    operations = [
        migrations.CreateModel(
            name='FingerprintBucket',
            fields=[
                ('key', models.IntegerField(primary_key=True, serialize=False)),
                ('hashes', models.BinaryField(default=b'')),
            ],
        ),
        migrations.RunPython(buckets_fill, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name='fingerprint', name='fingerprint_band0'),
        migrations.RemoveIndex(model_name='fingerprint', name='fingerprint_band1'),
        migrations.RemoveIndex(model_name='fingerprint', name='fingerprint_band2'),
        migrations.RemoveIndex(model_name='fingerprint', name='fingerprint_band3'),
        migrations.RemoveField(model_name='fingerprint', name='band0'),
        migrations.RemoveField(model_name='fingerprint', name='band1'),
        migrations.RemoveField(model_name='fingerprint', name='band2'),
        migrations.RemoveField(model_name='fingerprint', name='band3'),
        migrations.AddIndex(
            model_name='fingerprint',
            index=models.Index(fields=['phash'], name='fingerprint_phash'),
        ),
    ]
