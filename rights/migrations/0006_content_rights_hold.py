from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('rights', '0005_merge_fingerprint_buckets_chain_reset'),
    ]

    operations = [
        migrations.AddField(
            model_name='content',
            name='rights_hold',
            field=models.JSONField(blank=True, default=dict, help_text='Possible infringement found on upload: the matches, and an operator\'s release or rejection'),
        ),
    ]
